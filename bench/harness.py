"""A leadflow stack of real processes for one scenario, always torn down.

Each stack gets a broker prefix, a temporary data dir and free ports of its own, so it
never meets a developer's `make up` or a test run on the same broker. On the way out,
whatever happened: services stopped, the prefix's queues and exchanges deleted, the data
dir removed (its logs are kept under var/bench/logs/ when the scenario failed).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.amqp import AMQP_PORT, delete_leadflow_topology, unique_prefix
from bench.procs import listener_pid
from devtools.ports import free_port
from devtools.stack import ROOT, SERVICES, Stack

BENCH_ENV = {
    "LEADFLOW_LOG_FORMAT": "json",
    "LEADFLOW_SHUTDOWN_GRACE_S": "5",
    "LEADFLOW_SANDBOX_LATENCY_MS": "0",
}
PROFILED = ("gateway", "enricher", "router")
TENANT = "default"  # the tenant of every request in dev, where auth is off
STOP_TIMEOUT_S = 15.0


@asynccontextmanager
async def leadflow_stack(
    env: dict[str, str] | None = None,
    services: tuple[str, ...] = SERVICES,
    logs_dir: Path = Path("var/bench/logs"),
    code_root: Path = ROOT,
) -> AsyncIterator[Stack]:
    """Start `services` (all by default) as real processes; everything undone on exit.
    `code_root`: the checkout whose services run (another revision's, for the cpu scenario)."""
    prefix = unique_prefix("lf")
    data_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    ports = {name: free_port() for name in (*SERVICES, "scraper")}
    stack = Stack(
        data_dir,
        env={**BENCH_ENV, "LEADFLOW_BROKER_PREFIX": prefix, **(env or {})},
        ports=ports,
        code_root=code_root,
    )
    failed = True
    try:
        await asyncio.to_thread(stack.start, *services)
        yield stack
        failed = False
    finally:
        await asyncio.to_thread(stop_all, stack)
        await delete_leadflow_topology(prefix)
        if failed:
            keep_logs(data_dir / "log", logs_dir / prefix)
        shutil.rmtree(data_dir, ignore_errors=True)


def keep_logs(source: Path, target: Path) -> None:
    if source.exists():
        shutil.copytree(source, target, dirs_exist_ok=True)
        print(f"   logs kept in {target}")


def stop_all(stack: Stack) -> None:
    for service in reversed(list(stack.services.values())):
        service.stop(timeout_s=STOP_TIMEOUT_S)


def service_pids(stack: Stack, names: tuple[str, ...] = SERVICES) -> dict[str, int]:
    pids = {}
    for name in names:
        proc = stack.services[name].proc if name in stack.services else None
        if proc is not None:
            pids[name] = proc.pid
    return pids


def with_broker(pids: dict[str, int]) -> dict[str, int]:
    """Add the broker's Erlang VM, when it runs on this machine (it is shared: other runs
    and tests use it too, so its CPU is indicative only)."""
    beam = listener_pid(AMQP_PORT)
    return {**pids, "rabbitmq": beam} if beam is not None else pids


def csv_path(stack: Stack, name: str) -> Path:
    return stack.data_dir / "exports" / TENANT / f"{name}.csv"
