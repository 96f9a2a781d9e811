"""Scale-out figures: provider-bound throughput per enricher process, and the router's drain.

`scale`: the provider-bound workload (every provider call takes 100 ms) with 1, 2 and 4
enricher processes on one broker and one sandbox. Each enricher is given a small prefetch
(`SCALE_PREFETCH` tasks), so that one process is bound by its own in-flight work, not by
the two cores of this machine: adding a process adds in-flight work, and the figure says
how much of it turns into leads/s (`per_added_enricher` = leads/s with n / (n x leads/s
with 1); 1.0 is linear).

`drain`: the router alone, with its events queue pre-filled. A job runs with the router
stopped until the enricher has acked every task (so every outcome waits in the events
queue); then the router starts and the clock runs until the CSV holds every row. That is
the single writer's ceiling (store transaction per batch, CSV append, webhook cutter),
measured on SQLite and, where a PostgreSQL server answers, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.client import CsvProgress, Gateway, client_session, enrich_body
from bench.config import BenchConfig
from bench.harness import csv_path, leadflow_stack
from bench.pgdb import postgres_available, temporary_database
from bench.procs import cpu_seconds
from bench.report import RunReport, Scenario, rate, ratio
from bench.workload import require_completed, run_workload
from devtools.ports import free_port
from devtools.samples import make_leads
from devtools.stack import Stack
from shared.tasks import task_size

SCALE_PREFETCH = 2
TASK_BATCH = 25  # LEADFLOW_TASK_BATCH_SIZE's default; a big job's tasks are bigger (task_size)
ENRICHER_COUNTS = (1, 2, 4)
METRICS_POLL_S = 0.2
CONSUMED = "leadflow_messages_consumed"  # the family of leadflow_messages_consumed_total


async def run_scale(config: BenchConfig, report: RunReport) -> Scenario:
    env = {
        "LEADFLOW_SANDBOX_LATENCY_MS": f"{config.provider_latency_ms:g}",
        "LEADFLOW_ENRICH_PREFETCH": str(SCALE_PREFETCH),
        "LEADFLOW_MAX_LEADS_PER_JOB": str(max(config.scale_leads, config.job_chunk)),
    }
    by_count: dict[int, dict[str, Any]] = {}
    for count in ENRICHER_COUNTS:
        async with leadflow_stack(env) as stack:
            extra = await start_extra_enrichers(stack, count - 1)
            result = await run_workload(
                stack,
                config.scale_leads,
                chunk=config.scale_leads,
                timeout_s=config.timeout_s(config.scale_leads, min_rate=20.0),
                seed=count,
            )
            for process in extra:
                await asyncio.to_thread(process.stop, 15.0)
        by_count[count] = {
            "leads_per_s": round(result.leads_per_s, 1),
            "steady_leads_per_s": result.figures()["steady_leads_per_s"],
            "cpu_ms_per_lead": result.figures()["cpu_ms_per_lead"],
        }
    one = by_count[1]["steady_leads_per_s"] or by_count[1]["leads_per_s"]
    scenario = Scenario(
        "scale",
        figures={
            "leads": config.scale_leads,
            "latency_ms": config.provider_latency_ms,
            "prefetch_per_enricher": SCALE_PREFETCH,
            "by_enrichers": {str(k): v for k, v in by_count.items()},
        },
    )
    for count, figures in by_count.items():
        steady = figures["steady_leads_per_s"] or figures["leads_per_s"]
        per_added = ratio(steady, count * one)
        scenario.figures["by_enrichers"][str(count)]["per_added_enricher"] = per_added
        scenario.row(
            f"{count} enricher(s), {config.scale_leads:,} leads @ "
            f"{config.provider_latency_ms:g} ms",
            rate(steady, "leads/s steady"),
            f"{ratio(steady, one)}x one enricher ({per_added}x linear); "
            f"whole run {rate(figures['leads_per_s'], 'leads/s')}",
        )
    return scenario


async def start_extra_enrichers(stack: Stack, count: int) -> list[Any]:
    processes = []
    for index in range(count):
        process = stack.process("enricher", {"LEADFLOW_HTTP_PORT": str(free_port())})
        process.port = int(process.env["LEADFLOW_HTTP_PORT"])
        process.log_path = stack.data_dir / "log" / f"enricher-{index + 2}.log"
        process.start()
        processes.append(process)
    for process in processes:
        await asyncio.to_thread(process.wait_ready)
    return processes


async def run_drain(config: BenchConfig, report: RunReport) -> Scenario:
    scenario = Scenario("drain", figures={"leads": config.drain_leads})
    scenario.figures["sqlite"] = await drain_once(config, {})
    sqlite_rate = scenario.figures["sqlite"]["leads_per_s"]
    scenario.row(
        f"router drain, {config.drain_leads:,} pre-filled outcomes, SQLite",
        rate(sqlite_rate, "leads/s"),
        f"router CPU {scenario.figures['sqlite']['router_cpu_ms_per_lead']} ms/lead",
    )
    reason = await postgres_available()
    if reason is not None:
        scenario.figures["postgresql"] = {"skipped": reason}
        scenario.row("router drain, PostgreSQL", "skipped", reason)
        return scenario
    async with temporary_database() as url:
        scenario.figures["postgresql"] = await drain_once(config, {"LEADFLOW_STORE_URL": url})
    pg_rate = scenario.figures["postgresql"]["leads_per_s"]
    scenario.row(
        f"router drain, {config.drain_leads:,} pre-filled outcomes, PostgreSQL",
        rate(pg_rate, "leads/s"),
        f"{ratio(pg_rate, sqlite_rate)}x SQLite; router CPU "
        f"{scenario.figures['postgresql']['router_cpu_ms_per_lead']} ms/lead",
    )
    return scenario


async def drain_once(config: BenchConfig, store_env: dict[str, str]) -> dict[str, Any]:
    leads = config.drain_leads
    env = {"LEADFLOW_MAX_LEADS_PER_JOB": str(max(leads, config.job_chunk)), **store_env}
    without_router = ("sandbox", "enricher", "scraper", "gateway")
    async with (
        leadflow_stack(env, services=without_router) as stack,
        client_session() as session,
    ):
        gateway = Gateway(session, stack.url("gateway"))
        job_id, _ = await gateway.submit(enrich_body(make_leads(leads, seed=7), "drain"))
        tasks = math.ceil(leads / task_size(leads, TASK_BATCH))
        await wait_enricher_acked(session, stack.url("enricher"), tasks, config.timeout_s(leads))
        progress = CsvProgress(csv_path(stack, "drain"))
        started = time.monotonic()
        await asyncio.to_thread(stack.start, "router")
        router_pid = stack.services["router"].proc.pid  # type: ignore[union-attr]
        done_at = await progress.wait_rows(leads, config.timeout_s(leads))
        # The whole process's CPU: it starts draining before it reports ready.
        router_cpu_s = cpu_seconds(router_pid) or 0.0
        await require_completed(gateway, job_id)
    elapsed = done_at - started
    assert progress.tenth_at is not None
    assert progress.ninetieth_at is not None
    steady_s = progress.ninetieth_at - progress.tenth_at
    return {
        # Between 10 % and 90 % of the rows: without the router's start-up.
        # Unless 10 % to 90 % landed between two polls (a router batch holds up to a
        # hundred tasks' outcomes): then the whole run's, start-up included.
        "leads_per_s": round(0.8 * leads / steady_s if steady_s > 0 else leads / elapsed, 1),
        "whole_run_leads_per_s": round(leads / elapsed, 1),
        "seconds": round(elapsed, 2),
        "router_cpu_s": round(router_cpu_s, 2),
        "router_cpu_ms_per_lead": round(router_cpu_s * 1000 / leads, 3),
        "note": "router CPU includes its start-up (imports, topology)",
    }


async def wait_enricher_acked(
    session: aiohttp.ClientSession, enricher_url: str, tasks: int, timeout_s: float
) -> None:
    """Wait until the enricher has acked `tasks` enrich tasks: every outcome is then in
    the events queue (an outcome is confirmed before its task is acked)."""
    deadline = time.monotonic() + timeout_s
    while (acked := await acked_tasks(session, enricher_url)) < tasks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the enricher acked {acked} of {tasks} tasks")
        await asyncio.sleep(METRICS_POLL_S)


async def acked_tasks(session: aiohttp.ClientSession, enricher_url: str) -> int:
    async with session.get(f"{enricher_url}/metrics") as response:
        return acked_enrich_tasks(await response.text())


def acked_enrich_tasks(metrics_text: str) -> int:
    """Enrich tasks acked, from a service's Prometheus text (every enrich lane together)."""
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(metrics_text)
            if family.name == CONSUMED
            for sample in family.samples
            if sample.name.endswith("_total")
            and sample.labels.get("outcome") == "ack"
            and ".enrich" in sample.labels["queue"]
        )
    )
