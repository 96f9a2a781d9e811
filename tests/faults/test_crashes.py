"""Workers and the router killed mid-job (kill -9, repeatedly), SIGTERM mid-batch, and a
lead that kills its consumer every time: nothing is lost or doubled, the job completes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from functools import partial

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.broker_node import BrokerNode
from tests.faults.invariants import assert_invariants
from tests.helpers import Api, WebhookReceiver, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

SLOW = {"LEADFLOW_SANDBOX_LATENCY_MS": "60", "LEADFLOW_ENRICH_PREFETCH": "2"}


async def progressed_to(api: Api, job_id: str, done: int) -> bool:
    return bool((await api.job(job_id))["progress"]["done"] >= done)


def submit_body(
    leads: list[dict[str, str]], webhook: WebhookReceiver, csv_name: str
) -> dict[str, object]:
    return {
        "leads": leads,
        "destinations": [
            {"type": "webhook", "url": webhook.url, "secret": webhook.secret, "batch_size": 50},
            {"type": "csv", "name": csv_name},
        ],
    }


@pytest.mark.parametrize("victim", ["enricher", "router"])
async def test_kill_9_repeatedly_loses_and_doubles_nothing(
    victim: str,
    fault_stack: Callable[..., Stack],
    broker_node: BrokerNode,
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
) -> None:
    stack = fault_stack(SLOW)
    stack.start()
    api = Api(stack.url("gateway"), http)
    leads = make_leads(1500, seed=101)
    job = await api.submit(submit_body(leads, webhook, f"kill-{victim}"))

    for fraction in (0.15, 0.4, 0.65):
        await wait_until(
            partial(progressed_to, api, job["job_id"], int(1500 * fraction)),
            timeout_s=120,
            what=f"{fraction:.0%} progress",
        )
        stack.services[victim].kill()
        await asyncio.to_thread(stack.start, victim)

    await assert_invariants(
        api,
        stack,
        broker_node,
        job["job_id"],
        {lead["id"] for lead in leads},
        csv_name=f"kill-{victim}",
        webhook=webhook,
    )


async def test_sigterm_mid_batch_finishes_in_flight_work_and_exits_0(
    fault_stack: Callable[..., Stack],
    broker_node: BrokerNode,
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
) -> None:
    stack = fault_stack({**SLOW, "LEADFLOW_SHUTDOWN_GRACE_S": "20"})
    stack.start()
    api = Api(stack.url("gateway"), http)
    leads = make_leads(800, seed=102)
    job = await api.submit(submit_body(leads, webhook, "sigterm"))
    await wait_until(lambda: progressed_to(api, job["job_id"], 100), timeout_s=60, what="progress")

    enricher = stack.services["enricher"]
    assert enricher.proc is not None
    enricher.proc.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(enricher.proc.wait, 30)
    assert exit_code == 0
    assert "consumer.draining" in enricher.log_path.read_text()
    # Nothing the stopped enricher held is left unacked: it finished or handed it back.
    prefix = stack.env["LEADFLOW_BROKER_PREFIX"]
    counts = await asyncio.to_thread(broker_node.queues, prefix)
    assert counts[f"{prefix}.enrich.tenant.default"]["messages_unacknowledged"] == 0

    await asyncio.to_thread(stack.start, "enricher")
    await assert_invariants(
        api,
        stack,
        broker_node,
        job["job_id"],
        {lead["id"] for lead in leads},
        csv_name="sigterm",
        webhook=webhook,
    )


async def test_a_lead_that_kills_its_consumer_is_dead_lettered_alone(
    fault_stack: Callable[..., Stack], broker_node: BrokerNode, http: aiohttp.ClientSession
) -> None:
    stack = fault_stack(
        {
            "LEADFLOW_FAULT_CRASH_ON": "Crash Dummy",
            "LEADFLOW_MAX_ATTEMPTS": "3",
            "LEADFLOW_SANDBOX_LATENCY_MS": "20",
        }
    )
    stack.start()
    api = Api(stack.url("gateway"), http)
    leads = make_leads(200, seed=103)
    leads[77] = {**leads[77], "full_name": "Crash Dummy"}
    job = await api.submit({"leads": leads, "destinations": [{"type": "csv", "name": "crash"}]})

    crashes = 0

    async def finished_or_restarted() -> bool:
        nonlocal crashes
        enricher = stack.services["enricher"]
        assert enricher.proc is not None
        if enricher.proc.poll() is not None:  # play the supervisor: restart what died
            crashes += 1
            await asyncio.to_thread(stack.start, "enricher")
        return bool((await api.job(job["job_id"]))["state"] == "completed")

    await wait_until(finished_or_restarted, timeout_s=180, what="job completed")
    assert 2 <= crashes <= 6

    final = await assert_invariants(
        api, stack, broker_node, job["job_id"], {lead["id"] for lead in leads}, csv_name="crash"
    )
    assert final["progress"]["failed"] == 1
    [failed] = await api.all_leads(job["job_id"], status="failed")
    assert failed["id"] == leads[77]["id"]
    assert "died or lost its connection" in failed["error"]

    async def parked() -> list[dict[str, object]]:
        _, page = await api.request("GET", f"/v1/dead-letters?job_id={job['job_id']}")
        return list(page["dead_letters"])

    [letter] = await wait_until(parked, what="dead letter parked")
    assert letter["lead_ids"] == [leads[77]["id"]]


async def test_a_standby_router_takes_over_when_the_active_one_dies(
    fault_stack: Callable[..., Stack],
    broker_node: BrokerNode,
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
) -> None:
    stack = fault_stack(SLOW)
    await asyncio.to_thread(stack.start)
    standby = stack.process("router", {"LEADFLOW_HTTP_PORT": str(free_port())})
    standby.log_path = stack.data_dir / "log" / "router-standby.log"
    standby.start()
    try:
        await asyncio.to_thread(standby.wait_ready)
        api = Api(stack.url("gateway"), http)
        leads = make_leads(1000, seed=104)
        job = await api.submit(submit_body(leads, webhook, "standby"))
        await wait_until(
            lambda: progressed_to(api, job["job_id"], 200), timeout_s=60, what="progress"
        )
        stack.services["router"].kill()  # the active consumer; the standby's turn

        await assert_invariants(
            api,
            stack,
            broker_node,
            job["job_id"],
            {lead["id"] for lead in leads},
            csv_name="standby",
            webhook=webhook,
        )
    finally:
        standby.stop()
