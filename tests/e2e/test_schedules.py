"""Saved searches end to end: runs every `every_s`, only new leads with `only_new`, one run
per slot with two routers, skipped slots while a run is still going, validation, delete."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from devtools.stack import Stack
from tests.helpers import Api, WebhookReceiver, free_port, wait_until

pytestmark = pytest.mark.e2e
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def scrape_body(max_leads: int, *, enrich: bool = False) -> dict[str, Any]:
    # A query of its own per test: the sandbox moves each query's list per search.
    keywords = f"head of sales {secrets.token_hex(3)}"
    return {
        "source": "sandbox",
        "query": {"keywords": keywords, "geo": "Paris"},
        "max_pages": 1,
        "max_leads": max_leads,
        "enrich": enrich,
    }


async def put_knobs(http: aiohttp.ClientSession, stack: Stack, **knobs: Any) -> None:
    async with http.put(f"{stack.url('sandbox')}/_sandbox/config", json=knobs) as r:
        assert r.status == 200, await r.text()


async def create(api: Api, body: dict[str, Any]) -> str:
    status, created = await api.request("POST", "/v1/schedules", json=body)
    assert status == 201, created
    return str(created["schedule_id"])


async def schedule(api: Api, schedule_id: str) -> dict[str, Any]:
    status, found = await api.request("GET", f"/v1/schedules/{schedule_id}")
    assert status == 200, found
    return dict(found)


async def finished_runs(api: Api, schedule_id: str, count: int) -> list[dict[str, Any]] | None:
    """The schedule's runs that made jobs, oldest first, once `count` of them finished."""
    runs = [r for r in (await schedule(api, schedule_id))["runs"] if r["job_id"]]
    done = [r for r in reversed(runs) if r["state"] in TERMINAL]
    return done if len(done) >= count else None


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_a_schedule_runs_every_2_s_and_delivers_only_new_leads(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_UPKEEP_INTERVAL_S": "0.2"})
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    await put_knobs(http, stack, source_shift_per_search=4)
    body = {"every_s": 2, "only_new": True, "job": scrape_body(10, enrich=True)}
    schedule_id = await create(api, body)

    runs = await wait_until(
        lambda: finished_runs(api, schedule_id, 3), timeout_s=60, what="three finished runs"
    )
    first, *later = runs[:3]
    seen: set[str] = set()
    for n, run in enumerate(runs[:3]):
        assert run["state"] == "completed", run
        leads = await api.all_leads(run["job_id"])
        ids = {lead["id"] for lead in leads}
        # The first run takes the search's 10 people; each later search moved 4 further
        # down the list: 6 people seen before (not enriched nor delivered again), 4 new.
        assert len(ids) == (10 if n == 0 else 4), (n, sorted(ids))
        assert not ids & seen, f"run {n} delivered again {sorted(ids & seen)}"
        assert all(lead["status"] in ("enriched", "failed") for lead in leads)
        job = await api.job(run["job_id"])
        assert job["progress"]["total"] == len(ids)
        seen |= ids
    starts = [at(r["started_at"]) for r in runs[:3]]
    assert all(b - a >= 1.5 for a, b in itertools.pairwise(starts)), starts
    assert first["job_id"] != later[0]["job_id"]

    status, _ = await api.request("DELETE", f"/v1/schedules/{schedule_id}")
    assert status == 204
    status, problem = await api.request("GET", f"/v1/schedules/{schedule_id}")
    assert status == 404
    assert schedule_id in problem["detail"]
    status, _ = await api.request("DELETE", f"/v1/schedules/{schedule_id}")
    assert status == 404
    status, listed = await api.request("GET", "/v1/schedules")
    assert schedule_id not in {s["schedule_id"] for s in listed["schedules"]}


async def test_two_routers_run_each_slot_once_and_a_busy_slot_is_skipped(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    # Each run takes longer than a slot (slow enrichment), so slots come while it goes.
    stack = stack_factory(
        {"LEADFLOW_UPKEEP_INTERVAL_S": "0.2", "LEADFLOW_SANDBOX_LATENCY_MS": "400"}
    )
    await asyncio.to_thread(stack.start)
    second = stack.process("router", {"LEADFLOW_HTTP_PORT": str(free_port())})
    second.log_path = stack.data_dir / "log" / "router-2.log"
    second.start()
    try:
        await asyncio.to_thread(second.wait_ready)
        api = Api(stack.url("gateway"), http)
        schedule_id = await create(api, {"every_s": 1, "job": scrape_body(20, enrich=True)})

        async def skipped_and_two_runs() -> dict[str, Any] | None:
            found = await schedule(api, schedule_id)
            runs = found["runs"]
            skipped = [r for r in runs if r["state"] == "skipped"]
            with_jobs = [r for r in runs if r["job_id"] and r["state"] in TERMINAL]
            return found if skipped and len(with_jobs) >= 2 else None

        found = await wait_until(skipped_and_two_runs, timeout_s=90, what="a skip, two runs")
        status, _ = await api.request("DELETE", f"/v1/schedules/{schedule_id}")
        assert status == 204
    finally:
        second.stop()
    runs = list(reversed(found["runs"]))  # oldest first
    starts = [at(r["started_at"]) for r in runs]
    # One run (or skip) per slot: never two within the same second-long slot.
    assert all(b - a > 0.5 for a, b in itertools.pairwise(starts)), starts
    for run in runs:
        if run["state"] == "skipped":
            assert run["job_id"] is None
            assert "still going" in run["note"], run
    # Runs never overlap: each job started after the one before it finished.
    jobs = [await api.job(r["job_id"]) for r in runs if r["job_id"]]
    for before, after in itertools.pairwise(jobs):
        if before["finished_at"] is not None:
            assert after["created_at"] >= before["finished_at"], (before, after)
    assert len({r["job_id"] for r in runs if r["job_id"]}) == sum(1 for r in runs if r["job_id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"every_s": 5, "cron": "0 6 * * *"}, "every_s"),
        ({}, "every_s"),
        ({"every_s": 0}, "every_s"),
        ({"cron": "0 24 * * *"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"every_s": 5, "source": "nowhere"}, "job.source"),
        ({"every_s": 5, "query": {"keywords": " "}}, "job.query"),
    ],
)
async def test_a_bad_schedule_is_refused_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    job = scrape_body(5)
    for name in ("source", "query"):
        if name in body:
            job[name] = body.pop(name)
    status, problem = await api.request("POST", "/v1/schedules", json={**body, "job": job})
    assert status == 422, problem
    assert problem["errors"][0]["field"] == field, problem


async def test_an_unknown_schedule_is_404(api: Api) -> None:
    for method in ("GET", "DELETE"):
        status, problem = await api.request(method, "/v1/schedules/sch_nope")
        assert status == 404, problem
        assert problem["detail"] == "no schedule 'sch_nope'"


async def test_a_cron_schedule_shows_its_next_time(api: Api) -> None:
    schedule_id = await create(api, {"cron": "0 6 * * 1-5", "job": scrape_body(5)})
    try:
        found = await wait_until(
            lambda: schedule_runs_at_least(api, schedule_id, 1), what="the first run"
        )
        nxt = datetime.fromisoformat(found["next_run_at"].replace("Z", "+00:00"))
        assert (nxt.hour, nxt.minute) == (6, 0)
        assert nxt.weekday() < 5
        assert found["cron"] == "0 6 * * 1-5"
        assert found["every_s"] is None
    finally:
        await api.request("DELETE", f"/v1/schedules/{schedule_id}")


async def schedule_runs_at_least(api: Api, schedule_id: str, count: int) -> dict[str, Any] | None:
    found = await schedule(api, schedule_id)
    return found if len(found["runs"]) >= count else None


async def test_a_run_delivers_to_the_schedule_s_webhook_signed_with_its_secret(
    api: Api, webhook: WebhookReceiver
) -> None:
    """The secret is sealed when the schedule is saved, never shown, and signs each run's
    batches as a job's own secret would."""
    job = {
        **scrape_body(5),
        "destinations": [{"type": "webhook", "url": webhook.url, "secret": webhook.secret}],
    }
    schedule_id = await create(api, {"every_s": 3600, "job": job})
    try:
        [run] = await wait_until(
            lambda: finished_runs(api, schedule_id, 1), timeout_s=60, what="the first run"
        )
        assert run["state"] == "completed"
        found = await schedule(api, schedule_id)
        assert found["job"]["destinations"][0]["secret"] is None

        async def delivered() -> bool:
            return len(webhook.lead_ids()) == 5

        await wait_until(delivered, what="the run's leads at the webhook")
        assert all(webhook.signature_valid(batch) for batch in webhook.batches)
        assert {b["body"]["job_id"] for b in webhook.batches} == {run["job_id"]}
    finally:
        await api.request("DELETE", f"/v1/schedules/{schedule_id}")
