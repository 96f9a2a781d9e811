"""Retention: finished jobs older than `LEADFLOW_RETENTION_DAYS` are deleted with their
results (and their CSV exports when `LEADFLOW_DELETE_EXPORTS` is on); idempotency keys
are dropped after their 24 hours."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from shared.logging import get_logger
from shared.results import remove_exports
from shared.store import Store, delete_job, epoch_s

log = get_logger(__name__)
EVERY_S = 3600.0
IDEMPOTENCY_KEPT_S = 24 * 3600


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
        expired = await self.store.transaction(lambda conn: expire(conn, self.days))
        if self.delete_exports:
            await remove_exports(self.exports_dir, [e for _, exports in expired for e in exports])
        if expired:
            log.info("retention.deleted", jobs=len(expired), days=self.days)


def expire(conn: sqlite3.Connection, days: float) -> list[tuple[str, list[tuple[str, str]]]]:
    conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < ?", (epoch_s() - IDEMPOTENCY_KEPT_S,)
    )
    old = conn.execute(
        "SELECT job_id FROM jobs WHERE state IN ('completed', 'failed', 'cancelled', 'timed_out')"
        " AND finished_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) LIMIT 1000",
        (f"-{days} days",),
    ).fetchall()
    return [(row[0], delete_job(conn, row[0])) for row in old]
