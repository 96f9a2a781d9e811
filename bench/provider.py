"""Provider-bound: leads/s when every provider call takes 100 ms, against the ideal.

The ideal is worked out from what the enricher's code does, with its real settings:

- in flight: `LEADFLOW_ENRICH_PREFETCH` tasks x `LEADFLOW_TASK_BATCH_SIZE` leads (8 x 25 = 200);
  the naive ceiling is that / latency (2,000 leads/s at 100 ms);
- the waterfall is sequential per lead (alpha, then beta only if email or domain is still
  missing), and a task is acked only when all of its leads are done, so a task holds its
  prefetch slot for as many latencies as its slowest lead makes calls: with 25 leads per
  task, nearly every task has a lead that needs beta -> 2 latencies per task;
- each provider has its own concurrency limit (`LEADFLOW_PROVIDER_<NAME>_CONCURRENCY`,
  64): at most 64 / latency calls/s to it, divided by the calls per lead it gets
  (measured from the sandbox's request counts: every lead asks alpha, some ask beta).

ideal = min(prefetch bound, each provider's bound): whichever the code hits first.
"""

from __future__ import annotations

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


def ideal_for(env: dict[str, str], latency_s: float, calls_per_lead: dict[str, float]) -> Ideal:
    enricher = enricher_settings(EnvReader(env))
    batch = gateway_settings(EnvReader(env)).task_batch_size
    in_flight = enricher.concurrency * batch
    # Sequential calls the slowest lead of a task makes: provider k adds a round when at
    # least one of the task's leads asks it (share c_k of leads ask it).
    rounds = sum(
        1 - (1 - min(calls_per_lead.get(p.name, 0.0), 1.0)) ** batch for p in enricher.providers
    )
    provider_bounds = {
        f"provider {p.name} concurrency {p.concurrency}": p.concurrency
        / latency_s
        / calls_per_lead[p.name]
        for p in enricher.providers
        if calls_per_lead.get(p.name)
    }
    return Ideal(
        naive=in_flight / latency_s,
        prefetch_bound=in_flight / (rounds * latency_s),
        provider_bounds=provider_bounds,
        in_flight=in_flight,
        rounds_per_task=round(rounds, 3),
    )


async def sandbox_calls(stack: Stack, leads: int) -> dict[str, float]:
    """Provider calls per lead, from what the sandbox was asked."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{stack.url('sandbox')}/_sandbox/stats") as response,
    ):
        stats: dict[str, Any] = await response.json()
    return {name: count / leads for name, count in stats["requests"].items()}


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
        calls = await sandbox_calls(stack, config.provider_leads)
        ideal = ideal_for(stack.env, latency_s, calls)
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
    }
    scenario.row(
        f"{config.provider_leads:,} leads @ {config.provider_latency_ms:g} ms",
        rate(result.leads_per_s, "leads/s"),
        f"{ratio(result.leads_per_s, ideal.leads_per_s)}x the ideal "
        f"{rate(ideal.leads_per_s, 'leads/s')} (bound by {ideal.binding})",
    )
    scenario.row(
        "ideal, step by step",
        f"{ideal.naive:,.0f} -> {ideal.prefetch_bound:,.0f} leads/s",
        f"{ideal.in_flight} in flight / latency; / {ideal.rounds_per_task} sequential calls "
        f"per task; calls/lead {', '.join(f'{k} {v:.2f}' for k, v in calls.items())}",
    )
    return scenario
