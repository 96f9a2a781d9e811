"""The gateway under load: accepting 10,000-lead jobs, and status reads while they run.

The POSTs come first (their accept time is the figure), and the jobs they create are the
load the status requests run beside: 200 concurrent clients read `GET /v1/jobs/{id}` of
the running jobs until the request budget is spent. The clients run in this process, on
the same two cores, so their own CPU is part of every latency measured.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any

from bench.client import TERMINAL, Gateway, client_session, enrich_body
from bench.config import BenchConfig
from bench.harness import leadflow_stack
from bench.report import RunReport, Scenario, rate
from devtools.samples import make_leads

STORM_TIMEOUT_S = 120.0


async def accept_times(gateway: Gateway, config: BenchConfig) -> tuple[list[str], list[float]]:
    job_ids, seconds = [], []
    for i in range(config.gateway_posts):
        leads = make_leads(config.gateway_post_leads, seed=100 + i)
        job_id, accept_s = await gateway.submit(enrich_body(leads, f"gateway-{i}"))
        job_ids.append(job_id)
        seconds.append(accept_s)
    return job_ids, seconds


async def status_storm(
    gateway: Gateway, job_ids: list[str], clients: int, requests: int
) -> tuple[list[float], float]:
    """`requests` status reads by `clients` concurrent loops; latencies (s) and wall time."""
    budget = itertools.count()
    targets = itertools.cycle(job_ids)
    latencies: list[float] = []

    async def client() -> None:
        while next(budget) < requests:
            started = time.perf_counter()
            await gateway.job(next(targets))
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    async with asyncio.timeout(STORM_TIMEOUT_S):
        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.monotonic() - started


def percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49] * 1000, 1),
        "p90_ms": round(cuts[89] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


async def measure(config: BenchConfig) -> dict[str, Any]:
    async with leadflow_stack() as stack, client_session(config.gateway_clients) as session:
        gateway = Gateway(session, stack.url("gateway"))
        job_ids, accepts = await accept_times(gateway, config)
        before = await gateway.job(job_ids[0])
        latencies, wall_s = await status_storm(
            gateway, job_ids, config.gateway_clients, config.gateway_requests
        )
        after = [await gateway.job(job_id) for job_id in job_ids]
    return {
        "post_leads": config.gateway_post_leads,
        "accept_s": [round(s, 3) for s in accepts],
        "clients": config.gateway_clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall_s, 1),
        "first_job_done_before": before["progress"]["done"],
        "states_after": [status["state"] for status in after],
        **percentiles(latencies),
    }


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    figures = await measure(config)
    scenario = Scenario("gateway", figures=figures)
    accepts = figures["accept_s"]
    scenario.row(
        f"accept a {config.gateway_post_leads:,}-lead POST",
        f"{statistics.median(accepts):.2f} s median",
        f"each: {', '.join(f'{s:.2f}' for s in accepts)} s (later ones while jobs run)",
    )
    scenario.row(
        f"GET /v1/jobs/{{id}} x{config.gateway_clients} concurrent",
        f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms",
        f"{rate(figures['requests_per_s'], 'req/s')} over {figures['requests']:,} requests",
    )
    if all(state in TERMINAL for state in figures["states_after"]):
        scenario.notes.append(
            "every job had ended when the reads did: part of them ran without a job in progress"
        )
    return scenario
