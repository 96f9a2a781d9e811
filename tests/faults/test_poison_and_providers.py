"""A poison lead, providers that time out, and a job nobody works on."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from devtools.samples import make_leads
from tests.broker_node import BrokerNode
from tests.faults.invariants import assert_invariants, read_csv
from tests.helpers import StartStack, sandbox_config, sandbox_stats, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


async def test_poison_lead_is_dead_lettered_then_replayed(
    start_stack: StartStack, broker_node: BrokerNode, http: aiohttp.ClientSession
) -> None:
    stack, api = await start_stack({"LEADFLOW_MAX_ATTEMPTS": "3", "LEADFLOW_RETRY_BASE_S": "0.2"})
    await sandbox_config(http, stack, unavailable_for=["Poison Pill"])
    leads = make_leads(1000, seed=301)
    poison = leads[500] = {**leads[500], "full_name": "Poison Pill"}
    job = await api.submit({"leads": leads, "destinations": [{"type": "csv", "name": "poison"}]})

    final = await assert_invariants(
        api, stack, broker_node, job["job_id"], {lead["id"] for lead in leads}, csv_name="poison"
    )
    assert final["progress"]["enriched"] == 999
    assert final["progress"]["failed"] == 1
    [failed] = await api.all_leads(job["job_id"], status="failed")
    assert failed["id"] == poison["id"]
    assert "providers unavailable after 3 attempts" in failed["error"]

    async def parked() -> list[dict[str, Any]]:
        _, page = await api.request("GET", f"/v1/dead-letters?job_id={job['job_id']}")
        return list(page["dead_letters"])

    [letter] = await wait_until(parked, what="the poison lead parked")
    assert letter["lead_ids"] == [poison["id"]]
    assert letter["queue"].endswith(".enrich")  # the kind of work it failed in
    assert len(letter["history"]) == 3
    assert all("HTTP 503" in entry for entry in letter["history"])

    # Once the providers serve that person again, a replay gives the lead its outcome.
    await sandbox_config(http, stack, unavailable_for=[])
    status, replay = await api.request(
        "POST", "/v1/dead-letters/replay", json={"job_id": job["job_id"]}
    )
    assert status == 202, replay
    assert replay["replayed"] == [letter["id"]]

    async def upgraded() -> dict[str, Any] | None:
        job_now = await api.job(job["job_id"])
        return job_now if job_now["progress"]["failed"] == 0 else None

    after = await wait_until(upgraded, what="the replayed lead enriched")
    assert after["state"] == "completed"
    assert after["progress"]["enriched"] == 1000
    stored = {lead["id"]: lead for lead in await api.all_leads(job["job_id"])}
    assert stored[poison["id"]]["status"] == "enriched"

    async def csv_rewritten() -> bool:
        rows = read_csv(stack.data_dir / "exports" / "default" / "poison.csv")
        return len(rows) == 1000 and all(row["status"] == "enriched" for row in rows)

    await wait_until(csv_rewritten, what="CSV rewritten with the replayed lead, once")
    _, page = await api.request("GET", f"/v1/dead-letters?job_id={job['job_id']}&state=parked")
    assert page["dead_letters"] == []
    status, _ = await api.request("POST", "/v1/dead-letters/replay", json={"ids": [letter["id"]]})
    assert status == 404  # nothing parked any more


async def test_providers_that_time_out_are_retried_until_they_answer(
    start_stack: StartStack, broker_node: BrokerNode, http: aiohttp.ClientSession
) -> None:
    stack, api = await start_stack(
        {
            "LEADFLOW_PROVIDER_ALPHA_TIMEOUT_S": "0.3",
            "LEADFLOW_PROVIDER_BETA_TIMEOUT_S": "0.3",
            "LEADFLOW_MAX_ATTEMPTS": "20",
            "LEADFLOW_RETRY_BASE_S": "0.2",
            "LEADFLOW_RETRY_MAX_S": "1",
        }
    )
    await sandbox_config(http, stack, hang_rate=1.0, hang_s=5.0)
    leads = make_leads(300, seed=302)
    job = await api.submit({"leads": leads, "destinations": [{"type": "csv", "name": "timeouts"}]})

    async def timed_out_a_while() -> bool:
        return bool((await sandbox_stats(http, stack))["hangs"] >= 20)

    await wait_until(timed_out_a_while, timeout_s=60, what="provider calls timing out")
    assert (await api.job(job["job_id"]))["progress"]["done"] == 0
    await sandbox_config(http, stack, hang_rate=0.0)

    final = await assert_invariants(
        api, stack, broker_node, job["job_id"], {lead["id"] for lead in leads}, csv_name="timeouts"
    )
    assert final["progress"]["enriched"] == 300


async def test_job_without_a_consumer_is_flagged_stalled_then_recovers(
    start_stack: StartStack, broker_node: BrokerNode, http: aiohttp.ClientSession
) -> None:
    stack, api = await start_stack(
        {"LEADFLOW_STALL_AFTER_S": "1.5"}, "sandbox", "router", "gateway"
    )
    leads = make_leads(50, seed=303)
    job = await api.submit({"leads": leads})

    async def stalled() -> dict[str, Any] | None:
        now = await api.job(job["job_id"])
        return now if now["stalled"] else None

    flagged = await wait_until(stalled, timeout_s=30, what="job flagged stalled")
    assert "no consumer" in flagged["stall_reason"]
    async with http.get(f"{stack.url('router')}/metrics") as response:
        assert "leadflow_jobs_stalled 1.0" in await response.text()

    await asyncio.to_thread(stack.start, "enricher")
    final = await assert_invariants(
        api, stack, broker_node, job["job_id"], {lead["id"] for lead in leads}
    )
    assert final["stalled"] is False
    assert final["stall_reason"] is None
