"""Job control end to end: cancellation that really stops work, priorities, fair sharing
between tenants, timeouts, alerts, deletion and retention."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import Api, WebhookReceiver, queue_counts, wait_until

pytestmark = pytest.mark.e2e
# Slow providers and few slots: a job of a few thousand leads takes seconds, not less.
SLOW = {"LEADFLOW_SANDBOX_LATENCY_MS": "100", "LEADFLOW_ENRICH_PREFETCH": "4"}
SETTLE_S = 2.0


async def sandbox_calls(http: aiohttp.ClientSession, stack: Stack, job_id: str) -> dict[str, Any]:
    async with http.get(f"{stack.url('sandbox')}/_sandbox/stats") as response:
        stats = await response.json()
    return dict(stats["jobs"].get(job_id, {"calls": 0, "last_at": 0.0}))


async def done(api: Api, job_id: str) -> int:
    return int((await api.job(job_id))["progress"]["done"])


async def test_cancel_stops_every_call_and_delivery(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    stack = stack_factory(SLOW)
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    job = await api.submit(
        {
            "leads": make_leads(5000, seed=501),
            "destinations": [{"type": "webhook", "url": webhook.url, "batch_size": 50}],
        }
    )
    await wait_until(lambda: at_least(api, job["job_id"], 1000), timeout_s=90, what="20 % done")

    status, cancelled = await api.request("POST", f"/v1/jobs/{job['job_id']}/cancel")
    cancelled_at = time.time()
    assert status == 202, cancelled
    assert cancelled["state"] == "cancelled"
    assert (await api.job(job["job_id"]))["state"] == "cancelled"

    # What is in flight at the cancel may still land. Once the enricher has settled every
    # task of the job (done, or dropped for the cancel) nothing can call a provider again:
    # counted, not waited for with a fixed sleep.
    tasks = math.ceil(5000 / 25)  # the gateway's LEADFLOW_TASK_BATCH_SIZE default

    async def every_task_settled() -> bool:
        return await tasks_settled(http, stack) >= tasks

    await wait_until(every_task_settled, timeout_s=60, what="every task done or dropped")
    settled = await api.job(job["job_id"])
    calls_then = await sandbox_calls(http, stack, job["job_id"])
    batches_then = len(webhook.batches)
    assert calls_then["last_at"] <= cancelled_at + SETTLE_S
    assert await tasks_settled(http, stack) == tasks, "no task of the job came back"
    assert await sandbox_calls(http, stack, job["job_id"]) == calls_then
    assert len(webhook.batches) == batches_then
    final = await api.job(job["job_id"])
    assert final["progress"] == settled["progress"]
    assert final["progress"]["done"] < 5000
    assert final["destinations"][0]["pending"] == 0

    status, problem = await api.request("POST", f"/v1/jobs/{job['job_id']}/cancel")
    assert status == 409, problem


async def tasks_settled(http: aiohttp.ClientSession, stack: Stack) -> float:
    """Enrich tasks the enricher finished with: handled (acked) or dropped (job stopped)."""
    async with http.get(f"{stack.url('enricher')}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("leadflow_messages_consumed_total{")
        and ('outcome="ack"' in line or 'outcome="dropped"' in line)
    )


async def at_least(api: Api, job_id: str, count: int) -> bool:
    return await done(api, job_id) >= count


async def test_a_worker_started_after_the_cancel_drops_the_jobs_tasks(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory()
    await asyncio.to_thread(stack.start, "sandbox", "router", "gateway")
    api = Api(stack.url("gateway"), http)
    job = await api.submit({"leads": make_leads(300, seed=502)})
    status, _ = await api.request("POST", f"/v1/jobs/{job['job_id']}/cancel")
    assert status == 202
    other = await api.submit({"leads": make_leads(20, seed=503)})

    await asyncio.to_thread(stack.start, "enricher")
    await api.wait_job(other["job_id"])  # the new worker is working, after the cancelled tasks
    lane = f"{stack.env['LEADFLOW_BROKER_PREFIX']}.enrich.tenant.default"

    async def lane_empty() -> bool:
        ready, _ = await queue_counts(lane)
        return ready == 0

    await wait_until(lane_empty, what="the lane drained")
    assert (await sandbox_calls(http, stack, job["job_id"]))["calls"] == 0
    final = await api.job(job["job_id"])
    assert final["state"] == "cancelled"
    assert final["progress"]["done"] == 0


async def test_high_priority_job_overtakes_a_low_priority_backlog(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(SLOW)
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    low = await api.submit({"leads": make_leads(5000, seed=504), "priority": "low"})
    await wait_until(
        lambda: at_least(api, low["job_id"], 100), timeout_s=60, what="backlog running"
    )
    high = await api.submit({"leads": make_leads(50, seed=505), "priority": "high"})
    low_at_submission = await done(api, low["job_id"])

    await api.wait_job(high["job_id"], timeout_s=60)
    low_now = await done(api, low["job_id"])
    assert low_now - low_at_submission < 2500, (low_at_submission, low_now)


async def test_a_small_tenant_is_not_starved_by_a_big_one(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({**SLOW, "LEADFLOW_API_KEYS": "big:big-key-0001,small:small-key-001"})
    await asyncio.to_thread(stack.start)
    big = Api(stack.url("gateway"), http, "big-key-0001")
    small = Api(stack.url("gateway"), http, "small-key-001")
    big_jobs = [await big.submit({"leads": make_leads(10_000, seed=506 + n)}) for n in range(2)]
    await wait_until(
        lambda: at_least(big, big_jobs[0]["job_id"], 50), timeout_s=60, what="big running"
    )

    started = time.monotonic()
    job = await small.submit({"leads": make_leads(20, seed=508)})
    finished = await small.wait_job(job["job_id"], timeout_s=60)
    took_s = time.monotonic() - started
    assert finished["state"] == "completed"
    assert took_s < 10, f"the small tenant waited {took_s:.1f}s"
    big_done = sum([await done(big, j["job_id"]) for j in big_jobs])
    assert big_done < 10_000, "the small job finished long before the big one"


async def test_a_job_past_its_timeout_is_stopped_and_alerted_once(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession, webhook: WebhookReceiver
) -> None:
    stack = stack_factory(
        {**SLOW, "LEADFLOW_SANDBOX_LATENCY_MS": "400", "LEADFLOW_ALERT_WEBHOOK_URL": webhook.url}
    )
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    job = await api.submit({"leads": make_leads(2000, seed=509), "timeout_s": 2})

    final = await api.wait_job(job["job_id"], timeout_s=30)
    assert final["state"] == "timed_out"
    assert "timed out after 2s" in final["error"]
    stopped_at = time.time()

    async def alerted() -> list[dict[str, Any]]:
        return [b["body"] for b in webhook.batches if job["job_id"] in b["body"].get("text", "")]

    [alert] = await wait_until(alerted, timeout_s=30, what="the timeout alerted")
    assert "timed_out" in alert["text"]
    await asyncio.sleep(3 * SETTLE_S)  # several upkeep rounds: the alert is not sent again
    assert len(await alerted()) == 1
    calls = await sandbox_calls(http, stack, job["job_id"])
    assert calls["last_at"] <= stopped_at + SETTLE_S


async def test_delete_removes_a_finished_job_and_its_export(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_DELETE_EXPORTS": "true", "LEADFLOW_SANDBOX_LATENCY_MS": "200"})
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    running = await api.submit({"leads": make_leads(500, seed=510)})
    status, problem = await api.request("DELETE", f"/v1/jobs/{running['job_id']}")
    assert status == 409, problem

    job = await api.submit(
        {"leads": make_leads(10, seed=511), "destinations": [{"type": "csv", "name": "gone"}]}
    )
    await api.wait_job(job["job_id"])
    export = stack.data_dir / "exports" / "default" / "gone.csv"

    async def exported() -> bool:
        return export.exists()

    # The router writes the file after it committed the job's last leads.
    await wait_until(exported, timeout_s=30, what="the export written")
    status, _ = await api.request("DELETE", f"/v1/jobs/{job['job_id']}")
    assert status == 204
    status, _ = await api.request("GET", f"/v1/jobs/{job['job_id']}")
    assert status == 404
    assert not export.exists()


async def test_retention_deletes_old_finished_jobs(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_RETENTION_DAYS": "0.00003"})  # about 2.6 s
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    job = await api.submit({"leads": make_leads(5, seed=512)})
    await api.wait_job(job["job_id"])

    async def gone() -> bool:
        status, _ = await api.request("GET", f"/v1/jobs/{job['job_id']}")
        return status == 404

    await wait_until(gone, timeout_s=30, what="the finished job deleted by retention")
