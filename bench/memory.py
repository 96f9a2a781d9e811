"""Memory: each service's peak RSS during a 100,000-lead workload vs a 10,000-lead one.

Each workload runs on a fresh stack, so each peak is that workload's own. The big one is
submitted as back-to-back jobs of the gateway's per-job limit (10,000), as a client with
100,000 leads would have to. Peaks are the kernel's VmHWM (never missed between samples)
beside the sampled VmRSS; flat means the big peak is within 20 % of the small one.
"""

from __future__ import annotations

from typing import Any

from bench.config import BenchConfig
from bench.harness import leadflow_stack, service_pids
from bench.procs import RssSampler
from bench.report import RunReport, Scenario, rate
from bench.workload import run_workload
from devtools.stack import SERVICES

FLAT_TOLERANCE = 0.20


async def peaks_during(leads: int, config: BenchConfig) -> dict[str, Any]:
    async with leadflow_stack() as stack:
        sampler = RssSampler(service_pids(stack, SERVICES))
        sampler.start()
        at_start = {name: round(kb / 1024, 1) for name, kb in sampler.peak_kb.items()}
        try:
            result = await run_workload(
                stack, leads, chunk=config.job_chunk, timeout_s=config.timeout_s(leads)
            )
        finally:
            peaks = await sampler.stop()
    return {"leads_per_s": round(result.leads_per_s, 1), "at_start_mib": at_start, "peaks": peaks}


def verdict_of(name: str, growth: float) -> str:
    if name == "sandbox":
        return f"{growth:+.0%} (test double, not judged: it keeps stats on every person asked)"
    flat = "flat" if growth <= FLAT_TOLERANCE else "GROWS"
    return f"{growth:+.0%} ({flat}; limit +{FLAT_TOLERANCE:.0%})"


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    small = await peaks_during(config.memory_baseline_leads, config)
    big = await peaks_during(config.memory_leads, config)
    scenario = Scenario("memory")
    growth: dict[str, float] = {}
    for name in SERVICES:
        before = small["peaks"][name]["vmhwm_mib"]
        after = big["peaks"][name]["vmhwm_mib"]
        growth[name] = round(after / before - 1, 3) if before else 0.0
        scenario.row(
            f"{name} peak RSS", f"{before:.0f} -> {after:.0f} MiB", verdict_of(name, growth[name])
        )
    scenario.row(
        "throughput",
        rate(big["leads_per_s"], "leads/s"),
        f"{config.memory_leads:,} leads as {-(-config.memory_leads // config.job_chunk)} jobs",
    )
    verdict = all(growth[name] <= FLAT_TOLERANCE for name in SERVICES if name != "sandbox")
    scenario.figures = {
        "baseline_leads": config.memory_baseline_leads,
        "leads": config.memory_leads,
        "baseline": small,
        "big": big,
        "growth": growth,
        "flat": verdict,
    }
    if not verdict:
        scenario.notes.append("a leadflow service's peak RSS grew more than 20 %: not flat")
    return scenario
