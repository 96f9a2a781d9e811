"""The credit ledger and budgets, with real processes, the real broker and the sandbox's
vendor emulations: the credits leadflow reports (usage, the job) equal what the sandbox
charged, exactly; a job with `max_credits` pauses before it could pass them, resumes, and
ends having spent what an unbudgeted run spends; two enrichers racing on one tenant's daily
budget never overspend it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.stack import ROOT, ServiceProcess, Stack
from tests.e2e.test_vendor_waterfall import COMPANIES, FIRST, LAST, ORDER, expected
from tests.helpers import Api, free_port, wait_until

pytestmark = pytest.mark.e2e

WATERFALL = ("hunter", "pdl", "alpha", "apollo", "dropcontact")


def people(n: int) -> list[dict[str, Any]]:
    """`n` distinct people (name and company), so no answer is a repeat."""
    combos = [(f, last, c) for c in COMPANIES for last in LAST for f in FIRST]
    assert n <= len(combos)
    return [
        {"id": f"p{i}", "first_name": f, "last_name": last, "company": c}
        for i, (f, last, c) in enumerate(combos[:n])
    ]


async def sandbox_stats(http: aiohttp.ClientSession, stack: Stack) -> dict[str, Any]:
    async with http.get(f"{stack.url('sandbox')}/_sandbox/stats") as response:
        return dict(await response.json())


async def usage(api: Api) -> dict[str, Any]:
    status, body = await api.request("GET", "/v1/usage")
    assert status == 200, body
    return dict(body)


def vendor_env(providers: tuple[str, ...], **extra: str) -> dict[str, str]:
    return {
        "LEADFLOW_PROVIDERS": ",".join(providers),
        "LEADFLOW_PROVIDER_DROPCONTACT_POLL_S": "0.05",
        **extra,
    }


async def test_credits_reported_equal_what_the_sandbox_charged(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(vendor_env(WATERFALL))
    stack.start()
    api = Api(stack.url("gateway"), http)
    sent = people(80)

    job = await api.submit({"leads": sent})
    status = await api.wait_job(job["job_id"], timeout_s=180)
    stats = await sandbox_stats(http, stack)
    report = await usage(api)

    assert status["state"] == "completed"
    assert status["progress"]["done"] == len(sent)
    # Every kind of billing rule was exercised, the http provider's too.
    assert set(stats["credits"]) == set(WATERFALL), stats["credits"]
    assert status["credits_by_provider"] == stats["credits"]
    assert status["progress"]["credits"] == sum(stats["credits"].values())
    assert status["paused_reason"] is None
    assert report["credits"] == stats["credits"]
    assert report["credits_detail"] == stats["credits_detail"]
    (today,) = report["days"]
    assert today["credits"] == stats["credits"]

    # The same people again, in a new job: every answer is in the cache, nothing is paid.
    again = await api.submit({"leads": sent})
    assert (await api.wait_job(again["job_id"], timeout_s=120))["progress"]["credits"] == 0
    assert (await sandbox_stats(http, stack))["credits"] == stats["credits"]


async def test_the_verifiers_calls_are_paid_calls_in_the_ledger(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(vendor_env(("pdl",), LEADFLOW_VERIFIER="hunter"))
    stack.start()
    api = Api(stack.url("gateway"), http)
    sent = people(80)

    job = await api.submit({"leads": sent, "email_policy": "valid_only"})
    status = await api.wait_job(job["job_id"], timeout_s=180)
    stats = await sandbox_stats(http, stack)
    report = await usage(api)

    assert status["state"] == "completed"
    assert stats["credits_detail"]["hunter"] == {"verification": stats["credits"]["hunter"]}
    assert stats["credits"]["hunter"] > 0
    assert status["credits_by_provider"] == stats["credits"]
    assert status["progress"]["credits"] == sum(stats["credits"].values())
    assert report["credits_detail"] == stats["credits_detail"]

    # A budget counts them too: a cap below what pdl alone spends pauses the job.
    capped = await api.submit({"leads": people(160)[80:], "max_credits": 10})
    paused = await api.wait_job(capped["job_id"], ("paused", "completed"), timeout_s=120)
    assert paused["state"] == "paused", paused

    async def settled() -> int | None:
        spent = int((await api.job(capped["job_id"]))["progress"]["credits"])
        charged = sum((await sandbox_stats(http, stack))["credits"].values())
        return spent if spent + status["progress"]["credits"] == charged else None

    assert 0 < await wait_until(settled, timeout_s=30, what="in-flight calls settled") <= 10


async def estimate(api: Api, leads: list[dict[str, Any]]) -> dict[str, Any]:
    status, body = await api.request(
        "POST", "/v1/jobs/enrich", json={"leads": leads, "dry_run": True}
    )
    assert status == 200, body
    return dict(body["estimate"])


async def test_a_dry_run_estimates_from_the_cache_and_the_ledger_and_calls_nothing(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(vendor_env(WATERFALL))
    stack.start()
    api = Api(stack.url("gateway"), http)
    known, new = people(160)[:80], people(160)[80:]

    # No record yet: every call priced at its most.
    first = await estimate(api, known)
    assert first["leads"] == 80
    assert first["cached"] == 0
    assert first["credits_max"] >= 80
    assert set(first["by_provider"]) == set(WATERFALL)
    job = await api.submit({"leads": known})
    await api.wait_job(job["job_id"], timeout_s=180)
    stats = await sandbox_stats(http, stack)

    # The people enriched are in the cache: free.
    again = await estimate(api, known)
    assert again["cached"] == 80
    assert again["credits_expected"] == 0
    assert again["credits_max"] == 0
    # New people: priced by the providers' observed rates, below the most they could cost.
    fresh = await estimate(api, new)
    assert fresh["cached"] == 0
    assert 0 < fresh["credits_expected"] < fresh["credits_max"]
    assert fresh["by_provider"]["hunter"]["calls"] == 80  # the first asked: every lead
    spent = sum(stats["credits"].values())
    assert abs(fresh["credits_expected"] - spent) <= spent  # the same order as a real run

    # Nothing was called and no job created.
    assert (await sandbox_stats(http, stack)) == stats
    _status, page = await api.request("GET", "/v1/jobs")
    assert [j["job_id"] for j in page["jobs"]] == [job["job_id"]]


async def test_a_budget_pauses_the_job_before_it_is_passed_and_resume_finishes_it(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(vendor_env(ORDER))
    stack.start()
    api = Api(stack.url("gateway"), http)
    sent = people(300)
    unbudgeted: Counter[str] = Counter()
    for lead in sent:
        unbudgeted.update(expected(lead)[1])

    job = await api.submit({"leads": sent, "max_credits": 50})
    job_id = job["job_id"]
    paused = await api.wait_job(job_id, ("paused", "completed", "failed"), timeout_s=120)
    assert paused["state"] == "paused", paused
    assert paused["paused_reason"] == "budget"
    assert paused["max_credits"] == 50

    async def settled() -> int | None:
        # The calls in flight when the job paused settle; then the ledger holds them all.
        spent = (await api.job(job_id))["progress"]["credits"]
        charged = sum((await sandbox_stats(http, stack))["credits"].values())
        return spent if spent == charged else None

    spent = await wait_until(settled, timeout_s=30, what="in-flight calls settled")
    assert 0 < spent <= 50
    assert paused["progress"]["done"] < len(sent)

    # The pause was alerted, once.
    async def alerted() -> int:
        text = (stack.data_dir / "log" / "router.log").read_text()
        return sum(
            1
            for line in text.splitlines()
            if '"alert"' in line and job_id in line and '"paused"' in line
        )

    assert await wait_until(alerted, timeout_s=30, what="the pause alerted") == 1

    status, body = await api.request(
        "POST", f"/v1/jobs/{job_id}/resume", json={"max_credits": 100_000}
    )
    assert status == 202, body
    assert body["state"] in ("queued", "running")
    done = await api.wait_job(job_id, timeout_s=240)
    stats = await sandbox_stats(http, stack)

    assert done["state"] == "completed", done
    assert done["progress"]["done"] == len(sent)
    assert sorted(r["id"] for r in await api.all_leads(job_id)) == sorted(p["id"] for p in sent)
    assert stats["credits"] == {v: n for v, n in unbudgeted.items() if n}
    assert done["credits_by_provider"] == stats["credits"]
    # A job that is not paused cannot be resumed.
    status, body = await api.request("POST", f"/v1/jobs/{job_id}/resume", json={})
    assert status == 409, body


async def test_two_enrichers_racing_on_a_tenant_budget_never_overspend_it(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    budget = 30
    stack = stack_factory(vendor_env(("pdl", "apollo"), LEADFLOW_DAILY_CREDIT_BUDGET=str(budget)))
    stack.start()
    port = free_port()
    second = ServiceProcess(
        "enricher",
        port,
        {**stack.env, "LEADFLOW_HTTP_PORT": str(port)},
        stack.data_dir / "log" / "enricher-2.log",
    )
    second.start()
    try:
        second.wait_ready()
        api = Api(stack.url("gateway"), http)
        sent = people(300)
        jobs = [(await api.submit({"leads": sent[i::2]}))["job_id"] for i in range(2)]
        for job_id in jobs:
            paused = await api.wait_job(job_id, ("paused", "completed"), timeout_s=120)
            assert paused["state"] == "paused", paused
            assert paused["paused_reason"] == "tenant_budget"

        async def settled() -> dict[str, Any] | None:
            # Every call reserved was settled: nothing held beyond what the ledger shows.
            report = await usage(api)
            stats = await sandbox_stats(http, stack)
            return stats if report["credits"] == stats["credits"] else None

        stats = await wait_until(settled, timeout_s=30, what="ledger == sandbox")
        assert 0 < sum(stats["credits"].values()) <= budget
    finally:
        second.stop(timeout_s=10)


async def test_a_rerun_asks_only_for_what_is_missing_and_pays_nothing_twice(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_PROVIDERS": "alpha"})
    stack.start()
    api = Api(stack.url("gateway"), http)
    sent = people(60)
    first = await api.submit({"leads": sent})
    running = await api.request("POST", f"/v1/jobs/{first['job_id']}/rerun", json={})
    done = await api.wait_job(first["job_id"], timeout_s=120)
    assert done["state"] == "completed"
    assert running[0] in (202, 409)  # 409 while it was still running
    results = await api.all_leads(first["job_id"])
    missing = {r["id"] for r in results if not (r["email"] and r["company_domain"])}
    assert 0 < len(missing) < len(sent)
    before = await sandbox_stats(http, stack)

    # A provider added to the waterfall: the rerun asks it for the incomplete leads only,
    # and asks alpha nothing (its answers are in the cache).
    stack.stop("enricher")
    stack.start("enricher", extra_env={"LEADFLOW_PROVIDERS": "alpha,beta"})
    status, accepted = await api.request("POST", f"/v1/jobs/{first['job_id']}/rerun", json={})
    assert status == 202, accepted
    rerun = await api.wait_job(accepted["job_id"], timeout_s=120)
    after = await sandbox_stats(http, stack)

    assert rerun["state"] == "completed"
    assert rerun["progress"]["done"] == len(sent)
    assert after["people"].get("alpha") == before["people"]["alpha"]
    assert after["people"]["beta"] == len(missing)
    assert rerun["credits_by_provider"].get("alpha", 0) == 0
    again = {r["id"]: r for r in await api.all_leads(accepted["job_id"])}
    for r in results:
        if r["id"] not in missing:
            assert again[r["id"]]["email"] == r["email"]


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """This checkout's CLI (`python -m`, so the code under test, not an installed copy)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "leadflow_cli", *args],
        env={**base, "LEADFLOW_URL": stack.url("gateway")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_estimates_budgets_resumes_and_reruns(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    stack = stack_factory(vendor_env(("pdl",)))
    stack.start()
    api = Api(stack.url("gateway"), http)
    lead_file = tmp_path / "leads.json"
    lead_file.write_text(json.dumps(people(60)))

    estimate = cli(stack, "enrich", str(lead_file), "--dry-run")
    assert estimate.returncode == 0, estimate.stderr
    assert json.loads(estimate.stdout)["leads"] == 60

    submitted = cli(stack, "enrich", str(lead_file), "--max-credits", "5")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split(" as job ", 1)[1].split()[0]
    paused = await api.wait_job(job_id, ("paused",), timeout_s=60)
    assert paused["max_credits"] == 5

    resumed = cli(stack, "resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert (await api.wait_job(job_id, timeout_s=120))["state"] == "completed"
    refused = cli(stack, "resume", job_id)
    assert refused.returncode != 0
    assert "not paused" in refused.stderr

    rerun = cli(stack, "rerun", job_id, "--follow")
    assert rerun.returncode == 0, rerun.stderr + rerun.stdout
    new_id = rerun.stdout.split(" as job ", 1)[1].split()[0]
    assert (await api.job(new_id))["progress"]["credits"] == 0  # every answer cached
