"""Retention: finished jobs older than `LEADFLOW_RETENTION_DAYS` are deleted with their
results (and their CSV exports when `LEADFLOW_DELETE_EXPORTS` is on); idempotency keys
are dropped after their 24 hours."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from shared.logging import get_logger
from shared.results import remove_exports
from shared.store import IDEMPOTENCY_TTL_S, Store, delete_job, epoch_s

log = get_logger(__name__)
EVERY_S = 3600.0
JOBS_PER_TRANSACTION = 20
USAGE_EVENTS_KEPT_DAYS = 8


class RetentionKeeper:
    def __init__(self, store: Store, exports_dir: Path, days: float, delete_exports: bool) -> None:
        self.store = store
        self.exports_dir = exports_dir
        self.days = days
        self.delete_exports = delete_exports
        self._last = -EVERY_S

    async def check(self) -> None:
        # Hourly; more often when the retention itself is shorter than a few hours.
        every_s = min(EVERY_S, self.days * 86400 / 10)
        if self.days <= 0 or time.monotonic() - self._last < every_s:
            return
        self._last = time.monotonic()
        await self.store.transaction(forget_old_keys)
        deleted = 0
        # A few jobs a transaction: the router's writes (and the gateway's) wait on each one.
        while expired := await self.store.transaction(lambda conn: expire(conn, self.days)):
            if self.delete_exports:
                await remove_exports(self.exports_dir, [e for _, ex in expired for e in ex])
            deleted += len(expired)
        if deleted:
            log.info("retention.deleted", jobs=deleted, days=self.days)


def forget_old_keys(conn: sqlite3.Connection) -> None:
    """Idempotency keys after their 24 hours; usage dedup marks once no redelivery of their
    event can come any more."""
    conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < ?", (epoch_s() - IDEMPOTENCY_TTL_S,)
    )
    conn.execute(
        "DELETE FROM usage_events WHERE day < date('now', ?)", (f"-{USAGE_EVENTS_KEPT_DAYS} days",)
    )


def expire(conn: sqlite3.Connection, days: float) -> list[tuple[str, list[tuple[str, str]]]]:
    old = conn.execute(
        "SELECT job_id FROM jobs WHERE state IN ('completed', 'failed', 'cancelled', 'timed_out')"
        " AND finished_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) LIMIT ?",
        (f"-{days} days", JOBS_PER_TRANSACTION),
    ).fetchall()
    return [(row[0], delete_job(conn, row[0])) for row in old]
