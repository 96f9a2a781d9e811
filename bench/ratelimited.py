"""Provider-bound against rate limits: a provider allowing 20 requests a second per key,
with 3 keys and 100 ms latency, one request per lead.

The allowance (60 requests/s) is what binds, so the figure is the provider's request rate
while leads are waiting (between 10 % and 90 % of the requests, sampled from the
sandbox), against that allowance; and the 429s the sandbox answered, which must be none.
Goal (issue 13): >= 0.95x the allowance, zero 429s.

Until a rate-limited "later" spends no attempt (issue 13 item 8), the run allows plenty of
attempts and keeps the backoff in the shortest delay tier, as the shared-limits test does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.config import BenchConfig
from bench.harness import leadflow_stack
from bench.report import RunReport, Scenario, rate, ratio
from bench.workload import run_workload

PER_KEY_PER_S = 20
KEYS = 3
LATENCY_MS = 100
LEADS = 2_400  # 40 s at the allowance: long enough for a steady state


async def sandbox_stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/_sandbox/stats") as response:
        stats: dict[str, Any] = await response.json()
    return stats


async def sample_requests(
    session: aiohttp.ClientSession, url: str, samples: list[tuple[float, int]]
) -> None:
    while True:
        stats = await sandbox_stats(session, url)
        samples.append((time.monotonic(), stats["requests"].get("alpha", 0)))
        await asyncio.sleep(0.25)


def steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    start = next(s for s in samples if s[1] >= total * 0.1)
    end = next(s for s in samples if s[1] >= total * 0.9)
    return (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else 0.0


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    allowance = PER_KEY_PER_S * KEYS
    env = {
        "LEADFLOW_PROVIDERS": "alpha",
        "LEADFLOW_PROVIDER_ALPHA_BULK": "false",
        "LEADFLOW_PROVIDER_ALPHA_KEYS": ",".join(f"bench-key-{i}" for i in range(KEYS)),
        "LEADFLOW_PROVIDER_ALPHA_LIMITS": f"{PER_KEY_PER_S}/s",
        "LEADFLOW_SANDBOX_LATENCY_MS": str(LATENCY_MS),
        "LEADFLOW_MAX_ATTEMPTS": "100",
        "LEADFLOW_RETRY_MAX_S": "1",
    }
    samples: list[tuple[float, int]] = []
    async with leadflow_stack(env) as stack, aiohttp.ClientSession() as session:
        sandbox = stack.url("sandbox")
        async with session.put(
            f"{sandbox}/_sandbox/config", json={"rate_limits": {"alpha": PER_KEY_PER_S}}
        ) as response:
            response.raise_for_status()
        sampler = asyncio.create_task(sample_requests(session, sandbox, samples))
        try:
            result = await run_workload(
                stack, LEADS, chunk=LEADS, timeout_s=config.timeout_s(LEADS, min_rate=20.0)
            )
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        stats = await sandbox_stats(session, sandbox)
    requests = stats["requests"].get("alpha", 0)
    limited = stats["rate_limited"].get("alpha", 0)
    per_s = steady_rate(samples, requests)
    scenario = Scenario("ratelimited", figures=result.figures())
    scenario.figures |= {
        "allowance_requests_per_s": allowance,
        "requests": requests,
        "rate_limited": limited,
        "steady_requests_per_s": round(per_s, 1),
        "ratio_to_allowance": ratio(per_s, allowance),
        "latency_ms": LATENCY_MS,
        "keys": KEYS,
    }
    scenario.row(
        f"{LEADS:,} leads, {KEYS} keys x {PER_KEY_PER_S}/s @ {LATENCY_MS} ms",
        rate(per_s, "req/s"),
        f"{ratio(per_s, allowance)}x the allowance ({allowance} req/s), goal >= 0.95x",
    )
    scenario.row("429s answered", str(limited), "goal: 0")
    scenario.row("leads/s overall", rate(result.leads_per_s, "leads/s"))
    if limited:
        scenario.notes.append(f"{limited} requests were answered 429")
    return scenario
