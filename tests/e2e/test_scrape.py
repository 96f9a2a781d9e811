"""Scrape jobs end to end: paging with checkpoints, streaming enrichment, cooldowns,
dependencies, quotas and usage."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import Api, queue_counts, wait_until

pytestmark = pytest.mark.e2e
QUERY = {"keywords": "vp engineering", "geo": "London"}


async def sandbox(
    http: aiohttp.ClientSession, stack: Stack, method: str, path: str, **body: Any
) -> dict[str, Any]:
    async with http.request(
        method, f"{stack.url('sandbox')}/_sandbox/{path}", json=body or None
    ) as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


def source_requests(stats: dict[str, Any], source: str) -> list[dict[str, Any]]:
    return [
        r for key, reqs in stats["sources"].items() if key.startswith(f"{source}:") for r in reqs
    ]


async def job_where(
    api: Api, job_id: str, test: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    job = await api.job(job_id)
    return job if test(job) else None


async def test_ten_page_scrape_streams_into_enrichment_exactly_once(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(
        {"LEADFLOW_SOURCE_SANDBOX_RATE_PER_S": "3", "LEADFLOW_SANDBOX_LATENCY_MS": "30"}
    )
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    _, usage_before = await api.request("GET", "/v1/usage")
    job = await api.submit_scrape(
        {
            "source": "sandbox",
            "query": QUERY,
            "max_pages": 10,
            "max_leads": 1000,
            "enrich": True,
            "destinations": [{"type": "csv", "name": "scraped"}],
        }
    )

    # Enrichment starts while the scrape is still paging.
    streaming = await wait_until(
        lambda: job_where(api, job["job_id"], lambda j: j["progress"]["enriched"] > 0),
        timeout_s=60,
        what="first leads enriched",
    )
    assert streaming["progress"]["pages"] < 10

    final = await api.wait_job(job["job_id"], timeout_s=120)
    assert final["state"] == "completed"
    progress = final["progress"]
    assert progress["pages"] == 10
    assert progress["scraped"] == progress["total"] == progress["done"] == 250
    assert progress["enriched"] + progress["failed"] == 250

    stats = await sandbox(http, stack, "GET", "stats")
    assert len(source_requests(stats, "sandbox")) == 10
    with (stack.data_dir / "exports" / "default" / "scraped.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    ids = Counter(row["id"] for row in rows)
    assert len(ids) == 250
    assert max(ids.values()) == 1
    assert all(row["status"] in ("enriched", "failed") for row in rows)

    _, usage = await api.request("GET", "/v1/usage")
    assert usage["pages_scraped"] - usage_before["pages_scraped"] == 10
    assert usage["leads_scraped"] - usage_before["leads_scraped"] == 250
    assert usage["leads_enriched"] - usage_before["leads_enriched"] == progress["enriched"]
    assert usage["provider_calls"]["alpha"] >= 250


async def test_a_scraper_killed_mid_scrape_resumes_at_its_page(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_SOURCE_SANDBOX_RATE_PER_S": "2"})
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    job = await api.submit_scrape({"source": "sandbox", "query": QUERY, "max_pages": 10})
    await wait_until(
        lambda: job_where(api, job["job_id"], lambda j: j["progress"]["pages"] >= 4),
        timeout_s=60,
        what="four pages in",
    )
    stack.services["scraper"].kill()
    await asyncio.to_thread(stack.start, "scraper")

    final = await api.wait_job(job["job_id"], timeout_s=120)
    assert final["state"] == "completed"
    assert final["progress"]["pages"] == 10
    assert final["progress"]["scraped"] == final["progress"]["done"] == 250
    fetched = Counter(
        r["page"] for r in source_requests(await sandbox(http, stack, "GET", "stats"), "sandbox")
    )
    assert set(fetched) == set(range(1, 11))
    twice = [page for page, n in fetched.items() if n > 1]
    assert len(twice) <= 1, f"only the page in flight at the kill may be fetched again: {fetched}"
    assert all(page >= 5 for page in twice)
    leads = await api.all_leads(job["job_id"])
    assert len({lead["id"] for lead in leads}) == 250
    assert all(lead["status"] == "scraped" for lead in leads)


async def test_a_429_cools_the_account_down_and_spares_other_sources(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(
        {
            "LEADFLOW_SOURCES": "sandbox,other",
            "LEADFLOW_SOURCE_SANDBOX_RATE_PER_S": "20",
            "LEADFLOW_SOURCE_OTHER_RATE_PER_S": "20",
        }
    )
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    await sandbox(
        http,
        stack,
        "PUT",
        "config",
        source_faults=[{"source": "sandbox", "page": 3, "status": 429, "retry_after_s": 2}],
    )
    slowed = await api.submit_scrape({"source": "sandbox", "query": QUERY, "max_pages": 6})
    cooling = await wait_until(
        lambda: job_where(api, slowed["job_id"], lambda j: j["cooling_down_until"] is not None),
        timeout_s=30,
        what="the job showing its cooldown",
    )
    assert cooling["state"] == "running"
    spared = await api.submit_scrape({"source": "other", "query": QUERY, "max_pages": 6})
    other_done = await api.wait_job(spared["job_id"], timeout_s=30)
    assert (await api.job(slowed["job_id"]))["state"] == "running", (
        "the other source was not held up"
    )
    assert other_done["state"] == "completed"

    final = await api.wait_job(slowed["job_id"], timeout_s=60)
    assert final["state"] == "completed"
    assert final["progress"]["pages"] == 6
    assert final["cooling_down_until"] is None
    requests = sorted(
        source_requests(await sandbox(http, stack, "GET", "stats"), "sandbox"),
        key=lambda r: r["at"],
    )
    limited = next(r for r in requests if r["page"] == 3)
    after = [r for r in requests if r["at"] > limited["at"]]
    assert after, "the scrape went on after the cooldown"
    assert after[0]["at"] - limited["at"] >= 2.0 - 0.05, (
        "nothing reached the account during the cooldown"
    )


async def test_an_enrich_job_waits_for_its_scrape_then_takes_its_leads(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_SOURCE_SANDBOX_RATE_PER_S": "2"})
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    scrape = await api.submit_scrape({"source": "sandbox", "query": QUERY, "max_pages": 3})
    dependent = await api.submit({"depends_on": scrape["job_id"]})
    assert dependent["state"] == "waiting"
    assert (await api.job(dependent["job_id"]))["depends_on"] == scrape["job_id"]

    scraped = await api.wait_job(scrape["job_id"], timeout_s=60)
    final = await api.wait_job(dependent["job_id"], timeout_s=60)
    assert final["state"] == "completed"
    assert final["progress"]["total"] == scraped["progress"]["scraped"] == 75
    scraped_ids = {lead["id"] for lead in await api.all_leads(scrape["job_id"])}
    enriched = await api.all_leads(dependent["job_id"])
    assert {lead["id"] for lead in enriched} == scraped_ids
    assert all(lead["status"] in ("enriched", "failed") for lead in enriched)

    doomed = await api.submit_scrape({"source": "sandbox", "query": QUERY, "max_pages": 5})
    orphan = await api.submit(
        {"depends_on": doomed["job_id"], "leads": [{"full_name": "Ada Lovelace"}]}
    )
    status, _ = await api.request("POST", f"/v1/jobs/{doomed['job_id']}/cancel")
    assert status == 202
    failed = await api.wait_job(orphan["job_id"], timeout_s=30)
    assert failed["state"] == "failed"
    assert doomed["job_id"] in failed["error"]
    assert "cancelled" in failed["error"]
    status, problem = await api.request(
        "POST", "/v1/jobs/enrich", json={"depends_on": doomed["job_id"]}
    )
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "depends_on"


async def test_a_tenant_over_its_daily_quota_gets_429_and_nothing_is_queued(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_DAILY_QUOTA_LEADS": "100"})
    await asyncio.to_thread(stack.start, "router", "gateway")
    api = Api(stack.url("gateway"), http)

    await api.submit({"leads": make_leads(60, seed=601)})
    _, before = await api.request("GET", "/v1/jobs")
    for path, body in (
        ("/v1/jobs/enrich", {"leads": make_leads(50, seed=602)}),
        ("/v1/jobs/scrape", {"source": "sandbox", "query": QUERY, "max_leads": 41}),
    ):
        status, problem = await api.request("POST", path, json=body)
        assert status == 429, problem
        assert problem["status"] == 429
        assert "quota" in problem["detail"]
    _, after = await api.request("GET", "/v1/jobs")
    assert after["jobs"] == before["jobs"]
    lane = f"{stack.env['LEADFLOW_BROKER_PREFIX']}.enrich.tenant.default"

    ready, _ = await queue_counts(lane)
    assert ready == 3  # the 60 leads of the accepted job (25 a task), nothing more
    await api.submit_scrape({"source": "sandbox", "query": QUERY, "max_leads": 40})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "nowhere", "query": QUERY}, "source"),
        ({"source": "sandbox", "query": {"keywords": " "}}, "query"),
        ({"source": "sandbox", "query": QUERY, "max_pages": 0}, "max_pages"),
        ({"source": "sandbox", "query": QUERY, "surprise": 1}, "surprise"),
    ],
)
async def test_bad_scrape_requests_name_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    status, problem = await api.request("POST", "/v1/jobs/scrape", json=body)
    assert status == 422, problem
    assert field in [e["field"] for e in problem["errors"]]
