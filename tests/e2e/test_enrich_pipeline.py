"""The enrich pipeline end to end: real processes, the real broker, the sandbox providers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import aio_pika
import msgspec
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from shared.messages import LeadsEnriched, ResultLead
from tests.helpers import AMQP_URL, Api, WebhookReceiver, wait_until

pytestmark = pytest.mark.e2e


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def test_thousand_leads_reach_every_destination(
    stack: Stack, api: Api, webhook: WebhookReceiver
) -> None:
    leads = make_leads(1000, seed=11)
    job = await api.submit(
        {
            "leads": leads,
            "destinations": [
                {
                    "type": "webhook",
                    "url": webhook.url,
                    "secret": webhook.secret,
                    "batch_size": 100,
                },
                {"type": "csv", "name": "thousand"},
                {"type": "dashboard"},
            ],
        }
    )
    assert job["state"] == "queued"
    status = await api.wait_job(job["job_id"], timeout_s=120)

    assert status["state"] == "completed"
    assert status["progress"]["total"] == 1000
    assert status["progress"]["done"] == 1000
    assert status["progress"]["percent"] == 100.0
    expected_ids = {lead["id"] for lead in leads}

    # Webhook deliveries continue after completion; wait for the destination to report them.
    async def webhook_done() -> bool:
        dests = (await api.job(job["job_id"]))["destinations"]
        return bool(dests[0]["delivered"] == 1000)

    await wait_until(webhook_done, timeout_s=60, what="webhook delivered 1000")
    assert webhook.lead_ids() == expected_ids
    assert all(webhook.signature_valid(batch) for batch in webhook.batches)
    assert len({batch["id"] for batch in webhook.batches}) == len(webhook.batches)

    rows = read_csv(stack.data_dir / "exports" / "default" / "thousand.csv")
    assert len(rows) == 1000
    assert {row["id"] for row in rows} == expected_ids
    assert next(iter(rows[0])) == "id"

    stored = await api.all_leads(job["job_id"])
    assert {lead["id"] for lead in stored} == expected_ids
    from_waterfall = [
        lead
        for lead in stored
        if lead["email"] and lead["sources"]["email"].startswith("provider:")
    ]
    assert len(from_waterfall) > 500, f"only {len(from_waterfall)} of 1000 got an email"
    by_id = {lead["id"]: lead for lead in stored}
    for original in leads[:50]:
        assert by_id[original["id"]]["linkedin_url"] == original["linkedin_url"]
        assert by_id[original["id"]]["status"] == "enriched"


async def test_redelivered_event_changes_nothing(stack: Stack, api: Api) -> None:
    job = await api.submit(
        {"leads": make_leads(30, seed=12), "destinations": [{"type": "csv", "name": "redelivery"}]}
    )
    before = await api.wait_job(job["job_id"])
    stored = await api.all_leads(job["job_id"])
    csv_path = stack.data_dir / "exports" / "default" / "redelivery.csv"
    csv_before = csv_path.read_bytes()

    # The same outcomes again, twice, and one with different content: all duplicates.
    leads = [ResultLead(**{k: v for k, v in lead.items()}) for lead in stored[:10]]
    changed = [ResultLead(id=lead.id, status="failed", error="should be ignored") for lead in leads]
    prefix = stack.env["LEADFLOW_BROKER_PREFIX"]
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{prefix}.events")
        for batch in (leads, leads, changed):
            event = LeadsEnriched(job_id=job["job_id"], tenant="default", leads=batch)
            await exchange.publish(
                aio_pika.Message(json.dumps(to_builtins(event)).encode()),
                routing_key="lead.enriched",
            )

    # Events are handled in order: once a later job completes, the duplicates were handled.
    marker = await api.submit({"leads": make_leads(3, seed=13)})
    await api.wait_job(marker["job_id"])

    after = await api.job(job["job_id"])
    assert after["progress"] == before["progress"]
    assert after["state"] == "completed"
    assert csv_path.read_bytes() == csv_before
    assert await api.all_leads(job["job_id"]) == stored


async def test_results_export_as_ndjson_and_csv(api: Api) -> None:
    job = await api.submit({"leads": make_leads(25, seed=14)})
    await api.wait_job(job["job_id"])
    status, ndjson = await api.request("GET", f"/v1/jobs/{job['job_id']}/leads?format=ndjson")
    assert status == 200
    lines = [json.loads(line) for line in ndjson.splitlines()]
    assert len(lines) == 25
    status, text = await api.request("GET", f"/v1/jobs/{job['job_id']}/leads?format=csv&limit=10")
    assert status == 200
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 10
    assert rows[0]["id"] == lines[0]["id"]
    status, page = await api.request("GET", f"/v1/jobs/{job['job_id']}/leads?status=failed")
    assert status == 200
    assert page == {"leads": [], "next_cursor": None}


async def test_jobs_list_newest_first_with_cursor(api: Api) -> None:
    ids = [(await api.submit({"leads": make_leads(2, seed=20 + n)}))["job_id"] for n in range(3)]
    status, first = await api.request("GET", "/v1/jobs?limit=2")
    assert status == 200
    assert [j["job_id"] for j in first["jobs"]] == ids[::-1][:2]
    status, second = await api.request("GET", f"/v1/jobs?limit=2&cursor={first['next_cursor']}")
    assert second["jobs"][0]["job_id"] == ids[0]


async def test_idempotency_key_returns_the_first_job(api: Api) -> None:
    body = {"leads": make_leads(5, seed=30)}
    headers = {"Idempotency-Key": "order-7781"}
    first = await api.submit(body, headers=headers)
    again = await api.submit(body, headers=headers)
    assert again["job_id"] == first["job_id"]
    status, problem = await api.request(
        "POST", "/v1/jobs/enrich", json={"leads": make_leads(6, seed=30)}, headers=headers
    )
    assert status == 409
    assert problem["job_id"] == first["job_id"]


def to_builtins(value: object) -> object:
    return msgspec.to_builtins(value)
