"""The Celery peer in the same run: the same leads, the same per-lead work, Celery's way.

A real `celery worker` process consumes one task per lead from its own queue on the same
broker, calls the same sandbox providers and commits each result to SQLite; this process
publishes the tasks (the gateway's role in leadflow). Timed from the first publish to the
last row committed, like leadflow from its POST to its last CSV row.

Which pool: two are measured and the faster one counts, because neither wins on every
run of this shared two-core machine.
- gevent with 200 greenlets: the same 200 leads in flight as leadflow (8 tasks x 25) in
  one process, the pool Celery advises for I/O-bound tasks, and the least CPU per lead;
- prefork with 4 processes (2 per core): with zero-latency providers the worker is
  CPU-bound, and only processes use both cores; 2 per core so a process waiting on HTTP
  or an fsync does not leave a core idle, and no more because x8 and x16 cost more CPU
  per lead in trials (1.9-2.0 ms against 1.3). (With 100 ms providers prefork x4 would
  have only 4 leads in flight: there gevent is the one to use.)
Trials at 5,000 leads put threads x32 and prefork x2/x8/x16 within the same noise band.
`--celery-pools` measures others.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.amqp import delete_names, unique_prefix, wait_for_consumer
from bench.celery_app import TASK_NAME, PeerSettings, create_schema, make_app
from bench.config import BenchConfig
from bench.harness import keep_logs, leadflow_stack, service_pids, with_broker
from bench.procs import CpuMeter, stop_process
from bench.report import RunReport, Scenario, rate, ratio
from devtools.samples import make_leads
from devtools.stack import ROOT, Stack

CELERY_AMQP_URL = "pyamqp://guest:guest@127.0.0.1:5672//"
ROWS_POLL_S = 0.05
WORKER_READY_TIMEOUT_S = 60.0
# The worker's own rate is read from the backlog left when publishing ended, if big enough.
MIN_DRAIN_SHARE = 0.1
WORKER = "celery worker"


def start_worker(settings: PeerSettings, pool: str, log_path: Path) -> subprocess.Popen[bytes]:
    """`pool` is `name:concurrency`, e.g. `gevent:200`."""
    name, _, concurrency = pool.partition(":")
    argv = [
        sys.executable, "-m", "celery", "-A", "bench.celery_peer", "worker",
        "--pool", name, "--concurrency", concurrency,
        "--queues", settings.queue, "--hostname", f"{settings.queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **settings.env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def publish_all(
    settings: PeerSettings, job_id: str, leads: list[dict[str, Any]], producers: int
) -> float:
    """Send one task per lead from `producers` threads (as many web requests would, each
    calling `.delay()`), each with a producer of its own; the seconds it took."""
    app = make_app(settings)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(producers, thread_name_prefix="celery-publish") as pool:
            parts = [leads[i::producers] for i in range(producers)]
            for _ in pool.map(lambda part: publish_part(app, job_id, part), parts):
                pass
        return time.monotonic() - started
    finally:
        app.close()


def publish_part(app: Any, job_id: str, leads: list[dict[str, Any]]) -> None:
    with app.producer_or_acquire() as producer:
        for lead in leads:
            app.send_task(TASK_NAME, args=(job_id, lead), producer=producer)


class RowCounter:
    """Rows committed so far, read beside the writer (WAL). Rows are only ever inserted,
    so the largest rowid is the count, without the full scan `COUNT(*)` would make."""

    def __init__(self, db_path: Path) -> None:
        self.conn = sqlite3.connect(db_path)
        self.first_row_at: float | None = None

    def count(self) -> int:
        rows = int(self.conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM leads").fetchone()[0])
        if rows and self.first_row_at is None:
            self.first_row_at = time.monotonic()
        return rows

    async def wait_rows(
        self, count: int, timeout_s: float, publishing: asyncio.Task[float]
    ) -> tuple[float, tuple[float, int] | None]:
        """Poll until `count` rows; when it was seen, and (time, rows) when publishing ended."""
        deadline = time.monotonic() + timeout_s
        published_at: tuple[float, int] | None = None
        while (rows := self.count()) < count:
            if published_at is None and publishing.done():
                published_at = (time.monotonic(), rows)
            if time.monotonic() > deadline:
                raise TimeoutError(f"celery peer: {rows} of {count} rows after timeout")
            await asyncio.sleep(ROWS_POLL_S)
        return time.monotonic(), published_at


def drain_rate(published_at: tuple[float, int] | None, done_at: float, count: int) -> float | None:
    """The worker's rate once publishing was over, when enough was left to measure it."""
    if published_at is None:
        return None
    at, rows = published_at
    left = count - rows
    return round(left / (done_at - at), 1) if left >= count * MIN_DRAIN_SHARE else None


async def drive(
    settings: PeerSettings, pids: dict[str, int], config: BenchConfig
) -> dict[str, Any]:
    leads = make_leads(config.leads, seed=1)
    counter = RowCounter(settings.db_path)
    meter = CpuMeter(
        with_broker({**pids, "bench (publisher)": os.getpid()}), with_children=(WORKER,)
    )
    try:
        meter.start()
        started = time.monotonic()
        publishing = asyncio.create_task(
            asyncio.to_thread(publish_all, settings, "celery-peer", leads, config.celery_producers)
        )
        done_at, published_at = await counter.wait_rows(
            len(leads), config.timeout_s(len(leads)), publishing
        )
        publish_s = await publishing
        cpu = meter.stop()
    finally:
        counter.conn.close()
    total_s = done_at - started
    assert counter.first_row_at is not None
    return {
        "leads": len(leads),
        "publish_s": round(publish_s, 2),
        "first_result_s": round(counter.first_row_at - started, 3),
        "total_s": round(total_s, 2),
        "leads_per_s": round(len(leads) / total_s, 1),
        "publish_msgs_per_s": round(len(leads) / publish_s, 1),
        "worker_drain_leads_per_s": drain_rate(published_at, done_at, len(leads)),
        "cpu_s": cpu,
        "cpu_ms_per_lead": {k: round(v * 1000 / len(leads), 3) for k, v in cpu.items()},
    }


async def measure(config: BenchConfig, pool: str) -> dict[str, Any]:
    queue = f"{unique_prefix('celery')}.tasks"
    workdir = Path(tempfile.mkdtemp(prefix=f"{queue}-"))
    failed = True
    try:
        async with leadflow_stack(services=("sandbox",)) as stack:
            settings = PeerSettings(
                amqp_url=CELERY_AMQP_URL,
                queue=queue,
                db_path=workdir / "peer.db",
                sandbox_url=stack.url("sandbox"),
                confirm_publish=config.celery_confirm_publish,
            )
            figures = await with_worker(settings, pool, workdir, stack, config)
        failed = False
    finally:
        if failed:
            keep_logs(workdir, Path("var/bench/logs") / queue)
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


async def with_worker(
    settings: PeerSettings, pool: str, workdir: Path, stack: Stack, config: BenchConfig
) -> dict[str, Any]:
    """Start the worker, drive the leads through it; worker stopped and queue deleted after."""
    create_schema(settings.db_path)
    worker = start_worker(settings, pool, workdir / "worker.log")
    try:
        await wait_for_consumer(settings.queue, WORKER_READY_TIMEOUT_S)
        pids = {WORKER: worker.pid, **service_pids(stack, ("sandbox",))}
        return await drive(settings, pids, config)
    finally:
        await asyncio.to_thread(stop_process, worker, 20.0)
        await delete_names([settings.queue], [settings.queue])


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    runs = {pool: await measure(config, pool) for pool in config.celery_pools}
    best = max(runs, key=lambda pool: float(runs[pool]["leads_per_s"]))
    leadflow = report.figures("e2e")
    versus = ratio(leadflow["leads_per_s"], runs[best]["leads_per_s"]) if leadflow else None
    scenario = Scenario(
        "celery",
        figures={
            "runs": runs,
            "best_pool": best,
            "leads_per_s": runs[best]["leads_per_s"],
            "leadflow_over_celery": versus,
            "confirm_publish": config.celery_confirm_publish,
            "producers": config.celery_producers,
        },
    )
    for pool, figures in runs.items():
        describe(scenario, pool, figures, config, versus if pool == best else None)
    if versus is None:
        scenario.notes.append("run e2e in the same run for the leadflow/celery ratio")
    return scenario


def describe(
    scenario: Scenario,
    pool: str,
    figures: dict[str, Any],
    config: BenchConfig,
    versus: float | None,
) -> None:
    name, _, concurrency = pool.partition(":")
    scenario.row(
        f"{figures['leads']:,} leads, {name} x{concurrency}",
        rate(figures["leads_per_s"], "leads/s"),
        f"best pool: leadflow/celery = {versus}" if versus else "",
    )
    drain = figures["worker_drain_leads_per_s"]
    scenario.row(
        f"  first row; publishing ({config.celery_producers} producers)",
        f"{figures['first_result_s']:.2f} s; {figures['publish_s']:.1f} s",
        f"{rate(figures['publish_msgs_per_s'], 'msg/s')}"
        + (f"; worker alone on the backlog: {rate(drain, 'leads/s')}" if drain else ""),
    )
    scenario.row(
        "  CPU ms per lead",
        ", ".join(f"{who} {ms:.2f}" for who, ms in figures["cpu_ms_per_lead"].items()),
    )
