"""Webhook receivers that fail for a while, and one that never comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.broker_node import BrokerNode
from tests.faults.invariants import assert_invariants
from tests.helpers import Api, WebhookReceiver, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


@pytest.fixture
async def dead_webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(fail_with=503)
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_flaky_webhook_gets_everything_and_a_dead_one_is_given_up(
    fault_stack: Callable[..., Stack],
    broker_node: BrokerNode,
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
    dead_webhook: WebhookReceiver,
) -> None:
    stack = fault_stack({"LEADFLOW_WEBHOOK_RETRY_WINDOW_S": "6"})
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
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
    assert dead["delivered"] == 0
    assert dead["pending"] == 0
    assert dead["last_error"] == "HTTP 503"
    assert final["state"] == "completed"  # a destination failure never fails the job
    assert dead_webhook.attempts >= 4  # it was retried before being given up
