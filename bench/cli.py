"""`python -m bench [--only e2e,celery] [--leads 5000] ...`: run scenarios, print, save.

Scenarios run one after another (each on its own stack, never two at once: they would
measure each other). A failing scenario is recorded and the others still run; the exit
status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import (
    ceiling,
    cpu,
    e2e,
    gateway,
    memory,
    peer,
    profiling,
    provider,
    ratelimited,
    scale,
    upload,
)
from bench.config import SCENARIOS, BenchConfig
from bench.report import RunReport, Scenario, render_table

CELERY_POOLS = ("gevent", "prefork", "threads", "solo")
Runner = Callable[[BenchConfig, RunReport], Awaitable[Scenario]]
RUNNERS: dict[str, Runner] = {
    "broker": ceiling.run,
    "e2e": e2e.run,
    "cpu": cpu.run,
    "e2e-pg": e2e.run_pg,
    "provider": provider.run,
    "scale": scale.run_scale,
    "drain": scale.run_drain,
    "ratelimited": ratelimited.run,
    "celery": peer.run,
    "memory": memory.run,
    "upload": upload.run,
    "gateway": gateway.run,
    "profile": profiling.run,
}


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios; they run in this order: {','.join(SCENARIOS)}",
    )
    add_int = _adder(parser, defaults)
    add_int("--leads", "leads", "leads of the e2e, celery and profile jobs")
    add_int("--cpu-repeats", "cpu_repeats", "runs a side of the cpu scenario (lowest counts)")
    parser.add_argument(
        "--cpu-baseline",
        default=defaults.cpu_baseline,
        metavar="REV",
        help="git revision the cpu scenario compares this checkout with "
        f"(default {defaults.cpu_baseline}: main before issue 15)",
    )
    add_int("--broker-messages", "broker_messages", "messages per broker-ceiling measurement")
    add_int("--broker-repeats", "broker_repeats", "tries per hop count (the best is kept)")
    add_int("--provider-leads", "provider_leads", "leads of the provider-bound job")
    add_int("--scale-leads", "scale_leads", "leads per run of the enricher scale-out")
    add_int("--drain-leads", "drain_leads", "pre-filled outcomes the router drains")
    add_int("--memory-leads", "memory_leads", "leads of the big memory workload")
    add_int("--memory-baseline-leads", "memory_baseline_leads", "leads of the small one")
    add_int("--upload-leads", "upload_leads", "leads of the upload job (1000000: full size)")
    add_int("--gateway-requests", "gateway_requests", "status requests in the gateway run")
    add_int("--gateway-clients", "gateway_clients", "concurrent status requests")
    add_int("--gateway-post-leads", "gateway_post_leads", "leads per timed POST")
    parser.add_argument(
        "--celery-pools",
        type=pools,
        default=defaults.celery_pools,
        help="Celery worker pools to measure, pool:concurrency[,...] (the best counts; "
        f"default: {','.join(defaults.celery_pools)})",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=defaults.results_dir, help="where results go"
    )
    args = parser.parse_args(argv)
    chosen = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {SCENARIOS}")
    values = {k: v for k, v in vars(args).items() if k != "only"}
    # Later scenarios use earlier figures (e2e's ratio needs the ceiling, celery's e2e).
    ordered = tuple(name for name in SCENARIOS if name in chosen)
    return dataclasses.replace(defaults, scenarios=ordered, **values)


def pools(value: str) -> tuple[str, ...]:
    chosen = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in chosen:
        pool, _, concurrency = item.partition(":")
        if pool not in CELERY_POOLS or not concurrency.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: expected one of {CELERY_POOLS}:N")
    return chosen


def _adder(
    parser: argparse.ArgumentParser, defaults: BenchConfig
) -> Callable[[str, str, str], None]:
    def add(flag: str, name: str, what: str) -> None:
        default = getattr(defaults, name)
        parser.add_argument(
            flag, dest=name, type=int, default=default, help=f"{what} ({default:,})"
        )

    return add


async def run_scenario(name: str, config: BenchConfig, report: RunReport) -> Scenario:
    print(f"== {name} ...", flush=True)
    started = time.monotonic()
    try:
        scenario = await RUNNERS[name](config, report)
    except Exception as e:  # recorded in the results; the other scenarios still run
        traceback.print_exc()
        scenario = Scenario(name, error=f"{type(e).__name__}: {e}")
    scenario.duration_s = round(time.monotonic() - started, 1)
    print(f"   {name} done in {scenario.duration_s:.0f} s", flush=True)
    return scenario


async def run_all(config: BenchConfig) -> RunReport:
    # SIGTERM cancels the run like Ctrl-C does, so every scenario's cleanup still runs.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    report = RunReport(config=dataclasses.asdict(config), results_dir=config.results_dir)
    for name in config.scenarios:
        report.scenarios.append(await run_scenario(name, config, report))
    return report


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    try:
        report = asyncio.run(run_all(config))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("interrupted: processes stopped and queues deleted; no results written")
    path = report.write()
    print()
    print(render_table(report))
    print(
        f"\nload average at start {report.machine['loadavg_at_start']}, "
        f"at end {report.machine['loadavg_at_end']} on {report.machine['cpus']} CPUs"
    )
    print(f"results: {path} (and {config.results_dir / 'latest.json'})")
    if any(s.error for s in report.scenarios):
        sys.exit(1)
