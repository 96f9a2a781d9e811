"""The broker goes away: restarted mid-job, or the network between a service and the
broker cut (through a TCP proxy). Services report not-ready, reconnect, restore every
consumer, and the job completes with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.broker_node import BrokerNode
from tests.faults.invariants import assert_invariants
from tests.faults.test_crashes import SLOW, progressed_to, submit_body
from tests.helpers import Api, WebhookReceiver, wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
CONSUMERS_BACK_WITHIN_S = 30


async def readiness(http: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with http.get(f"{url}/readyz") as response:
            return response.status
    except aiohttp.ClientError:
        return None


async def test_broker_restart_mid_job(
    fault_stack: Callable[..., Stack],
    broker_node: BrokerNode,
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
) -> None:
    stack = fault_stack(SLOW)
    stack.start()
    api = Api(stack.url("gateway"), http)
    leads = make_leads(1200, seed=201)
    job = await api.submit(submit_body(leads, webhook, "broker-restart"))
    await wait_until(lambda: progressed_to(api, job["job_id"], 200), timeout_s=60, what="progress")

    await asyncio.to_thread(broker_node.stop_app)
    for name in ("gateway", "enricher", "router"):
        await wait_until(
            partial(is_503, http, stack.url(name)), timeout_s=30, what=f"{name} not ready"
        )
    status, problem = await api.request("POST", "/v1/jobs/enrich", json={"leads": make_leads(2)})
    assert status == 503, problem

    await asyncio.to_thread(broker_node.start_app)
    back_at = time.monotonic()
    prefix = stack.env["LEADFLOW_BROKER_PREFIX"]
    consumed = [
        f"{prefix}.control",
        f"{prefix}.enrich.tenant.default",
        f"{prefix}.enrich.suspect",
        f"{prefix}.router.events",
        f"{prefix}.enrich.dead",
        f"{prefix}.router.events.dead",
    ]

    async def consumers_back() -> bool:
        counts = await asyncio.to_thread(broker_node.queues, prefix)
        return all(counts.get(q, {}).get("consumers", 0) >= 1 for q in consumed)

    await wait_until(consumers_back, timeout_s=CONSUMERS_BACK_WITHIN_S + 5, what="consumers back")
    assert time.monotonic() - back_at <= CONSUMERS_BACK_WITHIN_S
    for name in ("gateway", "enricher", "router"):
        await wait_until(partial(is_200, http, stack.url(name)), timeout_s=30, what=f"{name} ready")

    await assert_invariants(
        api,
        stack,
        broker_node,
        job["job_id"],
        {lead["id"] for lead in leads},
        csv_name="broker-restart",
        webhook=webhook,
    )


@pytest.fixture
async def proxy(broker_node: BrokerNode) -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy(broker_node.port)
    await tcp.start()
    yield tcp
    await tcp.stop()


async def test_connection_drops_between_services_and_broker(
    fault_stack: Callable[..., Stack],
    broker_node: BrokerNode,
    proxy: TcpProxy,
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
) -> None:
    stack = fault_stack(SLOW)
    stack.start("sandbox", "gateway")
    through_proxy = {"LEADFLOW_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}/"}
    # In a thread: the proxy runs on this test's event loop and must serve the connections.
    await asyncio.to_thread(stack.start, "enricher", "router", extra_env=through_proxy)
    api = Api(stack.url("gateway"), http)
    leads = make_leads(1200, seed=202)
    job = await api.submit(submit_body(leads, webhook, "dropped"))

    for done in (150, 450, 750):
        await wait_until(
            partial(progressed_to, api, job["job_id"], done), timeout_s=90, what="progress"
        )
        before = proxy.connections_made
        await proxy.drop_all()
        await wait_until(
            partial(reconnected, proxy, before), timeout_s=30, what="services reconnected"
        )

    await assert_invariants(
        api,
        stack,
        broker_node,
        job["job_id"],
        {lead["id"] for lead in leads},
        csv_name="dropped",
        webhook=webhook,
    )


async def reconnected(proxy: TcpProxy, before: int) -> bool:
    return proxy.connections_made >= before + 2  # the enricher's and the router's


async def is_503(http: aiohttp.ClientSession, url: str) -> bool:
    return await readiness(http, url) == 503


async def is_200(http: aiohttp.ClientSession, url: str) -> bool:
    return await readiness(http, url) == 200
