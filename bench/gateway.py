"""The gateway under load: accepting 10,000-lead jobs, and status reads while they run.

The POSTs come first (their accept time is the figure), and the jobs they create are the
load the status requests run beside. Two ways to read:

- paced (open loop): requests arrive at a fixed rate, up to 200 in flight at once; the
  latency is the gateway's service time under the pipeline's load, as a dashboard fleet
  polling status would see it;
- storm (closed loop): 200 concurrent clients each read again as soon as answered. Its
  latency is mostly queueing: by Little's law p50 ~ 200 / throughput, so it measures
  throughput more than speed.

The clients run in this process, on the same two cores, so their own CPU is part of every
latency measured.
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
PACED_RATE_PER_S = 500.0
PACED_REQUESTS = 2000


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


async def paced_reads(
    gateway: Gateway, job_ids: list[str], rate_per_s: float, requests: int, max_in_flight: int
) -> list[float]:
    """Reads started at a fixed rate (open loop), however fast the answers come."""
    latencies: list[float] = []
    targets = itertools.cycle(job_ids)
    in_flight = asyncio.Semaphore(max_in_flight)

    async def one(job_id: str) -> None:
        async with in_flight:
            started = time.perf_counter()
            await gateway.job(job_id)
            latencies.append(time.perf_counter() - started)

    start = time.perf_counter()
    async with asyncio.timeout(STORM_TIMEOUT_S), asyncio.TaskGroup() as group:
        for i in range(requests):
            delay = start + i / rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the load generator, not waiting on it
            group.create_task(one(next(targets)))
    return latencies


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
        paced = await paced_reads(
            gateway, job_ids, PACED_RATE_PER_S, PACED_REQUESTS, config.gateway_clients
        )
        paced_done = await gateway.job(job_ids[-1])
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
        "paced": {
            "rate_per_s": PACED_RATE_PER_S,
            "requests": len(paced),
            "last_job_state_after": paced_done["state"],
            **percentiles(paced),
        },
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
    paced = figures["paced"]
    scenario.row(
        f"GET /v1/jobs/{{id}} at {paced['rate_per_s']:g}/s",
        f"p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms",
        f"open loop, up to {config.gateway_clients} in flight, {paced['requests']:,} requests,"
        f" jobs still running after: {paced['last_job_state_after']}",
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
