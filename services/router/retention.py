"""Retention: finished jobs older than `LEADFLOW_RETENTION_DAYS` are deleted with their
results (and their CSV exports when `LEADFLOW_DELETE_EXPORTS` is on); idempotency keys
are dropped after their 24 hours; dead letters that outlived their job, or were parked
longer than `LEADFLOW_DEAD_LETTER_RETENTION_DAYS`, are purged.

A job's results are deleted a chunk at a time first (shared/purge.py), so that a job of a
million leads does not hold the store's write lock for the whole of it. A job's deletion
is broadcast (`JobDeleted` on the control stream) before its rows go, as
`DELETE /v1/jobs/{id}` does, so every enricher drops the provider answers its leads used
from its cache; if the broadcast cannot be sent, nothing is deleted and the next round
tries again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Protocol

from shared import jobstate
from shared.broker import Outgoing, Publish
from shared.dbapi import Connection
from shared.logging import get_logger
from shared.messages import JobDeleted
from shared.purge import purge_lead_rows
from shared.results import remove_exports
from shared.store import IDEMPOTENCY_TTL_S, Store, delete_job, epoch_s, iso

log = get_logger(__name__)
EVERY_S = 3600.0
JOBS_PER_TRANSACTION = 20
DEAD_LETTERS_PER_TRANSACTION = 500
USAGE_EVENTS_KEPT_DAYS = 8


class Publisher(Protocol):
    async def publish(self, outgoing: Sequence[Outgoing], *, timeout_s: float = ...) -> None: ...


class RetentionKeeper:
    def __init__(
        self,
        store: Store,
        broker: Publisher,
        exports_dir: Path,
        days: float,
        delete_exports: bool,
        dead_letter_days: float = 0.0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.exports_dir = exports_dir
        self.days = days
        self.delete_exports = delete_exports
        self.dead_letter_days = dead_letter_days
        # Hourly; more often when a retention itself is shorter than a few hours.
        periods = [d * 86400 / 10 for d in (days, dead_letter_days) if d > 0]
        self.every_s = min([EVERY_S, *periods])
        self._last = -self.every_s

    async def check(self) -> None:
        if self.days <= 0 and self.dead_letter_days <= 0:
            return
        if time.monotonic() - self._last < self.every_s:
            return
        # Marked done only at the end: a round that failed (broker down) is tried again
        # at the next upkeep round, not an hour later.
        if self.days > 0:
            await self.store.transaction(forget_old_keys)
            await self.expire_jobs()
        if self.dead_letter_days > 0:
            await self.purge_dead_letters()
        self._last = time.monotonic()

    async def expire_jobs(self) -> None:
        deleted = 0
        # A few jobs a transaction: the router's writes (and the gateway's) wait on each one.
        while expired := await self.store.run(lambda conn: expired_jobs(conn, self.days)):
            await self.broker.publish(
                [Publish(JobDeleted(job_id=job_id, tenant=tenant)) for job_id, tenant in expired]
            )
            job_ids = [job_id for job_id, _ in expired]
            for job_id in job_ids:  # a big job's results: a chunk a transaction
                await purge_lead_rows(self.store, job_id)
            exports = await self.store.transaction(partial(delete_jobs, job_ids=job_ids))
            if self.delete_exports:
                await remove_exports(self.exports_dir, exports)
            deleted += len(expired)
        if deleted:
            log.info("retention.deleted", jobs=deleted, days=self.days)

    async def purge_dead_letters(self) -> None:
        before = cutoff(self.dead_letter_days)
        purged = 0
        while removed := await self.store.transaction(
            lambda conn: purge_dead_letters(conn, before)
        ):
            purged += removed
        if purged:
            log.info("retention.dead_letters_purged", dead_letters=purged)


def forget_old_keys(conn: Connection) -> None:
    """Idempotency keys after their 24 hours; usage dedup marks once no redelivery of their
    event can come any more."""
    conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < ?", (epoch_s() - IDEMPOTENCY_TTL_S,)
    )
    conn.execute(
        "DELETE FROM usage_events WHERE day < ?",
        ((datetime.now(UTC).date() - timedelta(days=USAGE_EVENTS_KEPT_DAYS)).isoformat(),),
    )


def cutoff(days: float) -> str:
    """The time `days` ago in the store's timestamp format, to compare stored ones with."""
    at = iso(epoch_s() - days * 86400)
    assert at is not None  # None only for None
    return at


def delete_jobs(conn: Connection, job_ids: list[str]) -> list[tuple[str, str]]:
    """Delete the jobs; the CSV exports they owned."""
    return [export for job_id in job_ids for export in delete_job(conn, job_id)]


def expired_jobs(conn: Connection, days: float) -> list[tuple[str, str]]:
    """A few finished jobs past their retention, as (job_id, tenant)."""
    old = conn.execute(
        f"SELECT job_id, tenant FROM jobs WHERE {jobstate.state_in(jobstate.TERMINAL)}"
        " AND finished_at < ? LIMIT ?",
        (cutoff(days), JOBS_PER_TRANSACTION),
    ).fetchall()
    return [(row[0], row[1]) for row in old]


def purge_dead_letters(
    conn: Connection, before: str, limit: int = DEAD_LETTERS_PER_TRANSACTION
) -> int:
    """Delete up to `limit` dead letters: those whose job is gone (a dead letter that
    arrived after its job was deleted: personal data of a deleted job), and those that died
    before `before` and are still parked or belong to no job. A replayed one of a job that
    still exists stays with its job, which retention deletes in its time. The count."""
    return int(
        conn.execute(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters d"
            " WHERE (d.job_id IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = d.job_id))"
            " OR (d.dead_at < ? AND (d.state = 'parked' OR d.job_id IS NULL)) LIMIT ?)",
            (before, limit),
        ).rowcount
    )
