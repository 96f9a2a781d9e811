"""Provider-bound: leads/s when every provider call takes 100 ms, against the ideal.

The ideal is worked out from what the enricher's code does, with its real settings:

- in flight: `LEADFLOW_ENRICH_PREFETCH` tasks x `LEADFLOW_TASK_BATCH_SIZE` leads (8 x 25 = 200);
  the naive ceiling is that / latency (2,000 leads/s at 100 ms);
- the waterfall runs a task's leads provider by provider (alpha for all, then beta for
  the leads still missing email or domain), one bulk request per provider per task, and a
  task is acked only when all of its leads are done: a task holds its slot for one latency
  per provider it had to ask (measured: requests to a provider / tasks, at most 1 each;
  with single-person requests, the chance that any of the task's leads asked it);
- each provider has its own concurrency limit (`LEADFLOW_PROVIDER_<NAME>_CONCURRENCY`,
  64): at most 64 / latency requests/s to it, times the people per request.

ideal = min(prefetch bound, each provider's bound): whichever the code hits first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.config import BenchConfig
from bench.harness import leadflow_stack
from bench.report import RunReport, Scenario, rate, ratio
from bench.workload import run_workload
from devtools.stack import Stack
from services.enricher.config import load_settings as enricher_settings
from services.gateway.config import load_settings as gateway_settings
from shared.config import EnvReader
from shared.tasks import task_size


@dataclass(frozen=True)
class Ideal:
    naive: float
    prefetch_bound: float
    provider_bounds: dict[str, float]
    in_flight: int
    rounds_per_task: float

    @property
    def leads_per_s(self) -> float:
        return min(self.prefetch_bound, *self.provider_bounds.values())

    @property
    def binding(self) -> str:
        bounds = {"prefetch x batch": self.prefetch_bound, **self.provider_bounds}
        return min(bounds, key=lambda name: bounds[name])


@dataclass(frozen=True)
class Asked:
    """What one provider was asked during the run."""

    requests: int
    people: int


async def sandbox_asked(stack: Stack) -> dict[str, Asked]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{stack.url('sandbox')}/_sandbox/stats") as response,
    ):
        stats: dict[str, Any] = await response.json()
    return {
        name: Asked(requests=count, people=stats["people"][name])
        for name, count in stats["requests"].items()
    }


def ideal_for(env: dict[str, str], latency_s: float, asked: dict[str, Asked], leads: int) -> Ideal:
    enricher = enricher_settings(EnvReader(env))
    batch = task_size(leads, gateway_settings(EnvReader(env)).task_batch_size)
    in_flight = enricher.worker.concurrency * batch
    tasks = math.ceil(leads / batch)
    rounds = sum(
        round_share(asked[p.name], leads, tasks, batch)
        for p in enricher.providers
        if p.name in asked
    )
    provider_bounds = {
        # requests/s it can take x people per request, over the share of leads it serves
        f"provider {p.name} concurrency {p.concurrency}": p.concurrency
        / latency_s
        * leads
        / asked[p.name].requests
        for p in enricher.providers
        if p.name in asked and asked[p.name].requests
    }
    return Ideal(
        naive=in_flight / latency_s,
        prefetch_bound=in_flight / (rounds * latency_s),
        provider_bounds=provider_bounds,
        in_flight=in_flight,
        rounds_per_task=round(rounds, 3),
    )


def round_share(asked: Asked, leads: int, tasks: int, batch: int) -> float:
    """The share of tasks that waited one latency for this provider."""
    if asked.requests < asked.people:  # bulk: one request per task that needed it
        return min(1.0, asked.requests / tasks)
    share_of_leads = min(asked.people / leads, 1.0)
    return 1 - (1 - share_of_leads) ** batch


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    latency_s = config.provider_latency_ms / 1000
    env = {"LEADFLOW_SANDBOX_LATENCY_MS": f"{config.provider_latency_ms:g}"}
    async with leadflow_stack(env) as stack:
        result = await run_workload(
            stack,
            config.provider_leads,
            chunk=config.job_chunk,
            timeout_s=config.timeout_s(config.provider_leads, min_rate=20.0),
        )
        asked = await sandbox_asked(stack)
        ideal = ideal_for(stack.env, latency_s, asked, config.provider_leads)
    calls = {name: a.requests / config.provider_leads for name, a in asked.items()}
    scenario = Scenario("provider", figures=result.figures())
    scenario.figures |= {
        "latency_ms": config.provider_latency_ms,
        "calls_per_lead": {k: round(v, 3) for k, v in calls.items()},
        "leads_in_flight": ideal.in_flight,
        "rounds_per_task": ideal.rounds_per_task,
        "ideal_naive_leads_per_s": round(ideal.naive, 1),
        "ideal_prefetch_bound_leads_per_s": round(ideal.prefetch_bound, 1),
        "ideal_provider_bounds_leads_per_s": {
            k: round(v, 1) for k, v in ideal.provider_bounds.items()
        },
        "ideal_leads_per_s": round(ideal.leads_per_s, 1),
        "binding_limit": ideal.binding,
        "ratio_to_ideal": ratio(result.leads_per_s, ideal.leads_per_s),
        "steady_ratio_to_ideal": ratio(result.steady_leads_per_s or 0.0, ideal.leads_per_s),
    }
    scenario.row(
        f"{config.provider_leads:,} leads @ {config.provider_latency_ms:g} ms",
        rate(result.leads_per_s, "leads/s"),
        f"{ratio(result.leads_per_s, ideal.leads_per_s)}x the ideal "
        f"{rate(ideal.leads_per_s, 'leads/s')} (bound by {ideal.binding})",
    )
    if result.steady_leads_per_s:
        scenario.row(
            "steady state (10 % -> 90 % of rows)",
            rate(result.steady_leads_per_s, "leads/s"),
            f"{ratio(result.steady_leads_per_s, ideal.leads_per_s)}x the ideal, without the "
            f"start (POST, first task: {result.first_row_s:.2f} s) and the tail",
        )
    scenario.row(
        "ideal, step by step",
        f"{ideal.naive:,.0f} -> {ideal.prefetch_bound:,.0f} leads/s",
        f"{ideal.in_flight} in flight / latency; / {ideal.rounds_per_task} sequential calls "
        f"per task; calls/lead {', '.join(f'{k} {v:.2f}' for k, v in calls.items())}",
    )
    return scenario
