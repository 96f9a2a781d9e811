"""The enricher's CPU per lead, in process: `python -m bench.enricher_cpu [--leads 10000]
[--batch 25] [--profile]`.

For trying a change to the enricher in seconds instead of a whole e2e run: the handler
(local steps, waterfall, outcomes), the provider cache and the credit ledger on temporary
SQLite files, the adapters calling a sandbox started as a subprocess (zero latency), and
the tasks decoded and their events encoded as the consumer does; no broker. Tasks run
`--prefetch` at a time, as the consumer runs them. It prints the CPU per lead of the event
loop's thread and of the store threads (from /proc, so the SQLite work the store threads
do with the GIL released is counted), and with `--profile` the loop's cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import msgspec

from devtools.ports import free_port
from devtools.samples import make_leads
from services.enricher.batches import StoreBatches
from services.enricher.cache import ProviderCache
from services.enricher.config import load_settings
from services.enricher.groupcommit import GroupCommitStore
from services.enricher.handlers import EnrichHandler
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers import build_provider
from services.enricher.spending import Spending
from services.enricher.waterfall import Waterfall
from shared.config import EnvReader
from shared.consumer import Delivery
from shared.health import Metrics
from shared.limits import StoreLimits
from shared.messages import Codec, EnrichTask, Lead, LeadOutcomes
from shared.store import Store

JOB = "bench-job"
TENANT = "bench"
SANDBOX_WAIT_S = 20.0


class NoCooldowns:
    """No control stream here: no key ever cools down (the sandbox answers no 429)."""

    def cooldown_left(self, target: str) -> float:
        return 0.0

    async def start_cooldown(self, target: str, until: float) -> None:
        return None


def thread_ticks() -> dict[str, int]:
    """CPU clock ticks (user + system) of each of this process's threads."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks[tid] = int(fields[11]) + int(fields[12])
    return ticks


@contextlib.asynccontextmanager
async def sandbox(data_dir: Path) -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LEADFLOW_HTTP_PORT": str(port),
        "LEADFLOW_SANDBOX_LATENCY_MS": "0",
        "LEADFLOW_DATA_DIR": str(data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.sandbox",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_ready(f"{url}/_sandbox/config")
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def wait_ready(url: str) -> None:
    deadline = time.monotonic() + SANDBOX_WAIT_S
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not answer at {url}")
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def profiled(enabled: bool) -> Iterator[cProfile.Profile | None]:
    profile = cProfile.Profile() if enabled else None
    if profile is not None:
        profile.enable()
    try:
        yield profile
    finally:
        if profile is not None:
            profile.disable()


async def run(leads: int, batch: int, prefetch: int, profile: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="enricher-cpu-"))
    async with sandbox(tmp / "sandbox") as url, aiohttp.ClientSession() as session:
        env = {"LEADFLOW_SANDBOX_URL": url, "LEADFLOW_DATA_DIR": str(tmp)}
        settings = load_settings(EnvReader(env))
        store = Store(tmp / "leadflow.db", durable=False)
        ledger = GroupCommitStore(tmp / "leadflow.db")  # as services/enricher/app.py has it
        cache = ProviderCache(tmp / "provider-cache.db", settings.provider_cache_ttl_s)
        for opened in (store, ledger, cache):
            await opened.open()
        await ledger.transaction(
            lambda conn: conn.execute(
                "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at,"
                " spec) VALUES (?, ?, 'enrich', 'running', 'normal', ?,"
                " '2026-01-01T00:00:00Z', x'7b7d')",
                (JOB, TENANT, leads),
            )
        )
        metrics = ProviderMetrics(Metrics())
        providers = [
            build_provider(
                p,
                session,
                NoCooldowns(),
                metrics,
                limits=StoreLimits(store),
                batches=StoreBatches(store),
            )
            for p in settings.providers
        ]
        spending = Spending(
            ledger,
            settings.daily_credit_budget,
            kinds={p.name: p.kind for p in settings.providers},
            keys={p.name: p.key for p in settings.providers},
        )
        handler = EnrichHandler(
            Waterfall(providers, cache, metrics, None, spending), None, spending
        )
        codec = Codec()
        all_leads = [msgspec.convert(lead, Lead) for lead in make_leads(leads, seed=7)]
        bodies = [
            codec.encode(EnrichTask(job_id=JOB, tenant=TENANT, leads=all_leads[i : i + batch]))
            for i in range(0, leads, batch)
        ]
        first = Delivery(attempt=0, redelivered=False)
        slots = asyncio.Semaphore(prefetch)
        outcomes = {"done": 0, "retries": 0}

        async def one(body: bytes) -> None:
            async with slots:
                task = codec.decode(body)
                assert isinstance(task, EnrichTask)
                handled = await handler(task, first)
                for publish in handled.publish:
                    codec.encode(publish.message)
                    if isinstance(publish.message, LeadOutcomes):
                        outcomes["done"] += len(publish.message.leads)
                outcomes["retries"] += len(handled.retries)

        main = str(os.getpid())
        before = thread_ticks()
        started, cpu = time.perf_counter(), time.process_time()
        with profiled(profile) as stats:
            await asyncio.gather(*(one(body) for body in bodies))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        after = thread_ticks()
        for opened in (cache, store, ledger):
            await opened.close()
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    loop_ms = (after[main] - before.get(main, 0)) * tick_ms / leads
    others = sum(after[t] - before.get(t, 0) for t in after if t != main) * tick_ms / leads
    print(
        f"{leads:,} leads in tasks of {batch}, {prefetch} at a time: {wall:.2f} s,"
        f" CPU {cpu * 1000 / leads:.3f} ms per lead (event loop {loop_ms:.3f},"
        f" store threads {others:.3f}); {outcomes['done']:,} outcomes,"
        f" {outcomes['retries']} retries"
    )
    if stats is not None:
        pstats.Stats(stats).sort_stats("tottime").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=25, help="leads per task")
    parser.add_argument("--prefetch", type=int, default=8, help="tasks at a time")
    parser.add_argument("--profile", action="store_true", help="cProfile the event loop")
    args = parser.parse_args()
    asyncio.run(run(args.leads, args.batch, args.prefetch, args.profile))


if __name__ == "__main__":
    main()
