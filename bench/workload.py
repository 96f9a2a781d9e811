"""One leadflow workload, timed from outside: POST the leads, wait for every CSV row.

A workload bigger than the gateway's per-job limit is submitted as back-to-back jobs of
`chunk` leads, each with a CSV export of its own. The clock starts before the first
POST and stops when the last CSV holds all its rows; the jobs must end `completed`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bench.client import CsvProgress, Gateway, client_session, enrich_body
from bench.harness import csv_path, service_pids, with_broker
from bench.procs import CpuMeter
from devtools.samples import make_leads
from devtools.stack import Stack


@dataclass
class WorkloadRun:
    leads: int
    jobs: int
    accept_s: list[float]
    first_row_s: float
    total_s: float
    # Leads/s between 10 % and 90 % of the rows (one job only): the rate without the
    # start-up (POST, first task) and the tail.
    steady_leads_per_s: float | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def leads_per_s(self) -> float:
        return self.leads / self.total_s

    def figures(self) -> dict[str, Any]:
        return {
            "leads": self.leads,
            "jobs": self.jobs,
            "accept_s": [round(s, 3) for s in self.accept_s],
            "first_result_s": round(self.first_row_s, 3),
            "total_s": round(self.total_s, 2),
            "steady_leads_per_s": None
            if self.steady_leads_per_s is None
            else round(self.steady_leads_per_s, 1),
            "leads_per_s": round(self.leads_per_s, 1),
            "cpu_s": self.cpu_s,
            "cpu_ms_per_lead": {k: round(v * 1000 / self.leads, 3) for k, v in self.cpu_s.items()},
        }


def chunks(leads: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [leads[i : i + size] for i in range(0, len(leads), size)]


async def run_workload(
    stack: Stack, count: int, *, chunk: int, timeout_s: float, seed: int = 1
) -> WorkloadRun:
    bodies = [
        (f"bench-{seed}-{i}", len(part), enrich_body(part, f"bench-{seed}-{i}"))
        for i, part in enumerate(chunks(make_leads(count, seed=seed), chunk))
    ]
    meter = CpuMeter(with_broker(service_pids(stack)))
    progress = [CsvProgress(csv_path(stack, name)) for name, _, _ in bodies]
    async with client_session() as session:
        gateway = Gateway(session, stack.url("gateway"))
        meter.start()
        started = time.monotonic()
        # Watching starts before the first POST: rows can appear before the 202 does.
        watching = asyncio.gather(
            *(
                watch.wait_rows(size, timeout_s)
                for watch, (_, size, _) in zip(progress, bodies, strict=True)
            )
        )
        try:
            submitted = [await gateway.submit(body) for _, _, body in bodies]
            done_at = await watching
        except BaseException:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            raise
        cpu = meter.stop()
        for job_id, _ in submitted:
            await require_completed(gateway, job_id)
    for watch, (name, size, _) in zip(progress, bodies, strict=True):
        if watch.poll() != size:
            raise RuntimeError(f"{name}.csv holds {watch.rows} rows for {size} leads")
    first_rows = [p.first_row_at for p in progress if p.first_row_at is not None]
    steady = None
    if len(progress) == 1 and progress[0].tenth_at and progress[0].ninetieth_at:
        window = progress[0].ninetieth_at - progress[0].tenth_at
        steady = 0.8 * count / window if window > 0 else None
    return WorkloadRun(
        leads=count,
        jobs=len(bodies),
        accept_s=[accept for _, accept in submitted],
        first_row_s=min(first_rows) - started,
        total_s=max(done_at) - started,
        cpu_s=cpu,
        steady_leads_per_s=steady,
    )


async def require_completed(gateway: Gateway, job_id: str, timeout_s: float = 30.0) -> None:
    status = await gateway.wait_terminal(job_id, timeout_s)
    if status["state"] != "completed":
        raise RuntimeError(f"job {job_id} ended {status['state']}: {status.get('error')}")
