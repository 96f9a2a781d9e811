"""Stall detection: a job whose progress has not moved for `stall_after_s` while nothing
consumes its work queue is flagged `stalled` (with the reason) in the store, the logs and
the metrics. Progress clears the flag (see the ledger)."""

from __future__ import annotations

import time
from functools import partial

from prometheus_client import Gauge

from shared import jobstate
from shared.broker import Broker
from shared.dbapi import Connection, Row
from shared.health import Metrics
from shared.logging import get_logger
from shared.store import Store, decode_spec, epoch_s

log = get_logger(__name__)
WORKING = jobstate.state_in(jobstate.WORKING)


class StallDetector:
    def __init__(
        self, store: Store, broker: Broker, metrics: Metrics, stall_after_s: float
    ) -> None:
        self.store = store
        self.broker = broker
        self.stall_after_s = stall_after_s
        self.interval_s = max(0.5, min(30.0, stall_after_s / 3))
        self._last = 0.0
        self._stalled = Gauge(
            "leadflow_jobs_stalled",
            "Unfinished jobs flagged stalled (no progress and no consumer on their queue).",
            registry=metrics.registry,
        )

    async def check(self) -> None:
        if time.monotonic() - self._last < self.interval_s:
            return
        self._last = time.monotonic()
        quiet_since = epoch_s() - self.stall_after_s
        candidates = await self.store.run(lambda conn: quiet_jobs(conn, quiet_since))
        for job_id, tenant, kinds in candidates:
            for kind in kinds:
                queue = self.broker.topology.lane_queue(kind, tenant)
                if await self.broker.consumer_count(queue) == 0:
                    reason = (
                        f"no progress for {self.stall_after_s:g}s and no consumer on {queue}:"
                        f" start a worker for {kind} work"
                    )
                    await self.store.transaction(partial(flag, job_id=job_id, reason=reason))
                    log.warning("job.stalled", job_id=job_id, reason=reason)
                    break
        self._stalled.set(await self.store.run(count_stalled))


def quiet_jobs(conn: Connection, quiet_since: float) -> list[tuple[str, str, tuple[str, ...]]]:
    """Unfinished jobs without progress, with the kinds of work they still need."""
    rows = conn.execute(
        f"SELECT job_id, kind, tenant, total, spec FROM jobs WHERE {WORKING}"
        " AND stalled = 0 AND progress_at IS NOT NULL AND progress_at < ?",
        (quiet_since,),
    ).fetchall()
    return [(row["job_id"], row["tenant"], needed_work(row)) for row in rows]


def needed_work(row: Row) -> tuple[str, ...]:
    if row["kind"] != "scrape":
        return (row["kind"],)
    scrape = decode_spec(row["spec"]).scrape
    paging = ("scrape",) if row["total"] is None else ()  # the last page is not in yet
    return (*paging, "enrich") if scrape is not None and scrape.enrich else paging


def flag(conn: Connection, job_id: str, reason: str) -> None:
    conn.execute(
        "UPDATE jobs SET stalled = 1, stall_reason = ? WHERE job_id = ? AND stalled = 0"
        f" AND {WORKING}",
        (reason, job_id),
    )


def count_stalled(conn: Connection) -> int:
    row = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE stalled = 1 AND {WORKING}").fetchone()
    return int(row[0])
