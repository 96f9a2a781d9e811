"""Webhook deliveries under the user's control, end to end: cancel on a completed job
stops its pending deliveries; a secret is rotated on a running job (both signatures
during the overlap, verified with the Standard Webhooks library); no answer carries a
secret."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import Api, WebhookReceiver, wait_until

pytestmark = pytest.mark.e2e
# Quick retries, and no circuit: the receivers here fail on purpose for a while.
FAST_RETRIES = {
    "LEADFLOW_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "LEADFLOW_WEBHOOK_BACKOFF_MAX_S": "0.5",
    "LEADFLOW_WEBHOOK_CIRCUIT_FAILURES": "1000",
}
NEW_SECRET = "whsec_" + base64.b64encode(b"rotated-secret-0123456789abcdef").decode()


async def test_cancel_on_a_completed_job_stops_its_pending_deliveries(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    stack = stack_factory(FAST_RETRIES)
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    webhook.fail_with = 503
    job = await api.submit(
        {
            "leads": make_leads(100, seed=71),
            "destinations": [
                {"type": "webhook", "url": webhook.url, "batch_size": 20},
                {"type": "csv", "name": "cancel-deliveries"},
            ],
        }
    )
    job_id = job["job_id"]
    done = await api.wait_job(job_id)
    assert done["state"] == "completed"

    async def retried() -> bool:
        return webhook.attempts >= 10

    await wait_until(retried, what="deliveries retried after completion")
    status, answer = await api.request("POST", f"/v1/jobs/{job_id}/cancel")
    assert status == 202, answer
    assert answer["state"] == "completed"
    assert answer["cancelled_deliveries"] == {"batches": 5, "leads": 100}
    webhook_dest = answer["destinations"][0]
    assert webhook_dest["pending"] == 0
    assert webhook_dest["delivered"] == webhook_dest["failed"] == 0
    assert webhook_dest["last_error"] == "pending deliveries cancelled by the user"
    # Nothing left to stop: 409, as before.
    status, problem = await api.request("POST", f"/v1/jobs/{job_id}/cancel")
    assert status == 409, problem

    # The receiver recovers. A later job's batch to it arrives; the cancelled ones never do
    # (they were due again within 0.5 s, well before this job's leads are enriched).
    webhook.fail_with = None
    later = await api.submit(
        {
            "leads": make_leads(10, seed=72),
            "destinations": [{"type": "webhook", "url": webhook.url}],
        }
    )

    async def later_delivered() -> bool:
        return any(b["body"]["job_id"] == later["job_id"] for b in webhook.batches)

    await wait_until(later_delivered, what="the later job's batch")
    assert all(b["body"]["job_id"] != job_id for b in webhook.batches)


async def test_a_secret_is_rotated_with_an_overlap_and_never_answered(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    stack = stack_factory(FAST_RETRIES)
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    webhook.fail_with = 503  # batches wait while the secret is rotated
    job = await api.submit(
        {
            "leads": make_leads(40, seed=73),
            "destinations": [
                {"type": "webhook", "url": webhook.url, "secret": webhook.secret, "batch_size": 20},
                {"type": "csv", "name": "rotation"},
            ],
        }
    )
    job_id = job["job_id"]
    path = f"/v1/jobs/{job_id}/destinations/0/secret"
    status, rotated = await api.request("PUT", path, json={"secret": NEW_SECRET, "overlap_s": 3600})
    assert status == 200, rotated
    assert rotated["destination"] == 0
    assert rotated["previous_secret_until"] is not None

    for bad_path, body, expected in [
        (f"/v1/jobs/{job_id}/destinations/7/secret", {"secret": NEW_SECRET}, 404),
        (f"/v1/jobs/{job_id}/destinations/x/secret", {"secret": NEW_SECRET}, 404),
        ("/v1/jobs/job_unknown/destinations/0/secret", {"secret": NEW_SECRET}, 404),
        (f"/v1/jobs/{job_id}/destinations/1/secret", {"secret": NEW_SECRET}, 404),  # csv
        (path, {"secret": ""}, 422),
        (path, {"secret": NEW_SECRET, "overlap_s": -1}, 422),
        (path, {"secret": NEW_SECRET, "extra": 1}, 422),
    ]:
        status, problem = await api.request("PUT", bad_path, json=body)
        assert status == expected, (bad_path, body, status, problem)

    webhook.fail_with = None
    await api.wait_job(job_id)

    async def delivered() -> bool:
        return len(webhook.batches) >= 2

    await wait_until(delivered, what="both batches delivered")
    for batch in webhook.batches:
        headers = {
            "webhook-id": batch["id"],
            "webhook-timestamp": batch["timestamp"],
            "webhook-signature": batch["signature"],
        }
        assert len(batch["signature"].split(" ")) == 2
        Webhook(webhook.secret).verify(batch["raw"], headers)  # the old one, still valid
        Webhook(NEW_SECRET).verify(batch["raw"], headers)

    # No answer carries a secret, old or new.
    answers = [
        (await api.request("GET", f"/v1/jobs/{job_id}"))[1],
        (await api.request("GET", "/v1/jobs"))[1],
        (await api.request("GET", f"/v1/jobs/{job_id}/events?leads=false"))[1],
    ]
    for answer in answers:
        text = answer if isinstance(answer, str) else json.dumps(answer)
        for secret in (webhook.secret, NEW_SECRET):
            assert secret not in text
            assert secret.removeprefix("whsec_") not in text
    status, openapi = await api.request("GET", "/openapi.json")
    assert status == 200
    secret_schema = openapi["components"]["schemas"]["WebhookDestination"]["properties"]["secret"]
    assert any(s.get("writeOnly") for s in secret_schema.get("anyOf", [secret_schema]))
