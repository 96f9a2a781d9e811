"""Webhook receivers that fail for a while, one that never comes back, one that hangs,
and one that answers `410 Gone`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from devtools.samples import make_leads
from services.router.destinations.webhook import GONE_REASON
from tests.broker_node import BrokerNode
from tests.faults.invariants import assert_invariants
from tests.helpers import StartStack, WebhookReceiver, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
ACME_KEY = "acme-key-0123456789abcdef0123456789"
GLOBEX_KEY = "globex-key-0123456789abcdef012345678"


@pytest.fixture
async def dead_webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(fail_with=503)
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_flaky_webhook_gets_everything_and_a_dead_one_is_given_up(
    start_stack: StartStack,
    broker_node: BrokerNode,
    webhook: WebhookReceiver,
    dead_webhook: WebhookReceiver,
) -> None:
    # Retries and giving up, without circuits (which would pause the flaky receiver's
    # retries past this short window; tests/unit/test_webhook_delivery.py covers them).
    stack, api = await start_stack(
        {"LEADFLOW_WEBHOOK_RETRY_WINDOW_S": "6", "LEADFLOW_WEBHOOK_CIRCUIT_FAILURES": "1000"}
    )
    webhook.fail_with = 500
    leads = make_leads(400, seed=401)
    job = await api.submit(
        {
            "leads": leads,
            "destinations": [
                {"type": "webhook", "url": webhook.url, "secret": webhook.secret, "batch_size": 40},
                {"type": "webhook", "url": dead_webhook.url, "batch_size": 100},
            ],
        }
    )

    async def refused_enough() -> bool:
        return webhook.attempts >= 15

    await wait_until(refused_enough, timeout_s=60, what="the flaky webhook refusing batches")
    failing = await api.job(job["job_id"])
    assert failing["destinations"][0]["last_error"] == "HTTP 500"
    webhook.fail_with = None  # it recovers

    ids = {lead["id"] for lead in leads}
    final = await assert_invariants(api, stack, broker_node, job["job_id"], ids, webhook=webhook)

    async def given_up() -> dict[str, object] | None:
        dest = (await api.job(job["job_id"]))["destinations"][1]
        return dest if dest["failed"] == 400 else None

    dead = await wait_until(given_up, timeout_s=60, what="the dead webhook given up")
    assert dead is not None
    assert dead["delivered"] == 0
    assert dead["pending"] == 0
    assert dead["last_error"] == "HTTP 503"
    assert final["state"] == "completed"  # a destination failure never fails the job
    assert dead_webhook.attempts >= 4  # it was retried before being given up


@dataclass
class TimedReceiver(WebhookReceiver):
    """A receiver that notes when each batch arrived (monotonic clock)."""

    arrivals: list[float] = field(default_factory=list)

    async def _receive(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        return await super()._receive(request)


class HangingReceiver:
    """Accepts connections and reads the request, never answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[float] = []  # when each request's first bytes came in
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if await reader.read(1):
            self.requests.append(time.monotonic())
        await reader.read()  # until the client gives up


@pytest.fixture
async def hanging_webhook() -> AsyncIterator[HangingReceiver]:
    receiver = HangingReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def timed_webhook() -> AsyncIterator[TimedReceiver]:
    receiver = TimedReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_a_hanging_receiver_delays_no_other_tenant(
    start_stack: StartStack,
    hanging_webhook: HangingReceiver,
    timed_webhook: TimedReceiver,
) -> None:
    timeout_s = 20.0
    _, gateway = await start_stack(
        {
            "LEADFLOW_WEBHOOK_TIMEOUT_S": str(timeout_s),
            "LEADFLOW_API_KEYS": f"acme:{ACME_KEY},globex:{GLOBEX_KEY}",
        }
    )
    acme, globex = gateway.with_key(ACME_KEY), gateway.with_key(GLOBEX_KEY)
    await acme.submit(
        {
            "leads": make_leads(30, seed=41),
            "destinations": [{"type": "webhook", "url": hanging_webhook.url, "batch_size": 10}],
        }
    )

    async def hanging() -> bool:
        return bool(hanging_webhook.requests)

    await wait_until(hanging, timeout_s=60, what="the hanging receiver's first request")
    first_hang = hanging_webhook.requests[0]
    job = await globex.submit(
        {
            "leads": make_leads(10, seed=42),
            "destinations": [
                {"type": "webhook", "url": timed_webhook.url, "secret": timed_webhook.secret}
            ],
        }
    )

    async def arrived() -> bool:
        return bool(timed_webhook.arrivals)

    # Before the fix the dispatcher awaited its claimed round together: the other tenant's
    # batch waited for the hanging POSTs to time out.
    await wait_until(arrived, timeout_s=2 * timeout_s, what="the other tenant's batch")
    assert timed_webhook.arrivals[0] < first_hang + timeout_s, (
        f"delivered {timed_webhook.arrivals[0] - first_hang:.1f}s after the hang began"
    )
    assert timed_webhook.signature_valid(timed_webhook.batches[0])
    done = await globex.wait_job(job["job_id"])
    assert done["destinations"][0]["delivered"] == 10


async def test_a_receiver_answering_410_is_disabled_without_failing_the_job(
    start_stack: StartStack,
    broker_node: BrokerNode,
    webhook: WebhookReceiver,
    dead_webhook: WebhookReceiver,
) -> None:
    dead_webhook.fail_with = 410
    # One delivery at a time to it, so exactly one request sees the 410.
    stack, api = await start_stack({"LEADFLOW_WEBHOOK_RECEIVER_CONCURRENCY": "1"})
    leads = make_leads(200, seed=410)
    job = await api.submit(
        {
            "leads": leads,
            "destinations": [
                {"type": "webhook", "url": dead_webhook.url, "batch_size": 20},
                {"type": "webhook", "url": webhook.url, "secret": webhook.secret, "batch_size": 20},
            ],
        }
    )
    ids = {lead["id"] for lead in leads}
    final = await assert_invariants(
        api, stack, broker_node, job["job_id"], ids, webhook=webhook, webhook_dest=1
    )
    assert final["state"] == "completed"
    assert final["error"] is None

    async def disabled() -> dict[str, object] | None:
        dest = (await api.job(job["job_id"]))["destinations"][0]
        return dest if dest["failed"] == 200 else None

    gone = await wait_until(disabled, timeout_s=60, what="the 410 destination failed")
    assert gone is not None
    assert gone["last_error"] == GONE_REASON
    assert gone["delivered"] == gone["pending"] == 0
    assert dead_webhook.attempts == 1  # no request after the 410
