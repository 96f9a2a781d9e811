"""Accepting a job: record it, publish all of its tasks with confirms, only then answer.

If the tasks cannot all be confirmed by the broker, the job is marked `failed` with the
reason and the client gets 503: a job never sits `queued` with its tasks never sent.
A job from a file upload (upload.py) publishes its tasks a window at a time from its spool
file, the confirms of a window pipelined, and answers only when the last window is
confirmed: the same rule, at any size.
A job that depends on another one is recorded `waiting` and publishes nothing yet; the
router releases it when its dependency completes.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from services.gateway.errors import CsvInUse, IdempotencyConflict, NotSent, QuotaExceeded
from shared import jobstate, tracing
from shared.broker import Outgoing, Publish, TaskPublisher
from shared.dbapi import Connection
from shared.errors import BrokerUnavailable
from shared.jobs import CsvDestination, Destination, JobSpec
from shared.logging import get_logger
from shared.messages import JobStopped, Lead
from shared.store import IDEMPOTENCY_TTL_S, Store, db_now, epoch_s, lock_job_seq, utc_now
from shared.tasks import Lanes

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class NewJob:
    """A validated job, ready to record; `tasks(job_id)` builds what starts its work."""

    kind: str
    priority: str
    timeout_s: int
    spec: JobSpec
    total: int | None
    charged: int  # leads it counts against the tenant's daily quota
    tasks: Callable[[str], list[Outgoing]]
    lanes: tuple[str, ...]
    depends_on: str | None = None
    waiting: bool = False
    deferred: list[Lead] | None = field(default=None)  # a waiting job's own leads
    # Webhook secrets by destination index, sealed (shared/secretbox.py); `spec` has none.
    sealed_secrets: dict[int, str] = field(default_factory=dict)
    # More to write in the job's own transaction (a saved search's run: its slot claimed and
    # the run recorded with the job, so a run never exists without its job, nor twice).
    record_with: Callable[[Connection, str], None] | None = None
    # Tasks too many to build at once (an upload): windows of them, published in turn.
    task_windows: Callable[[str], AsyncIterator[list[Outgoing]]] | None = None
    max_credits: int | None = None  # the job's credit budget (shared/credits.py)


@dataclass(frozen=True)
class Submission:
    job_id: str
    state: str
    replayed: bool = False


def new_job_id() -> str:
    # Time-ordered, so ids sort roughly by creation; random tail for uniqueness.
    return f"job_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class JobSubmitter:
    def __init__(
        self, store: Store, broker: TaskPublisher, publish_timeout_s: float, daily_quota_leads: int
    ) -> None:
        self.store = store
        self.broker = broker
        self.publish_timeout_s = publish_timeout_s
        self.daily_quota_leads = daily_quota_leads
        self.lanes = Lanes(broker)

    async def submit(
        self, tenant: str, job: NewJob, idempotency_key: str | None, raw_body: bytes | str
    ) -> Submission:
        """`raw_body`: the request body, or the hex digest of what an upload sent (the same
        key with other content is a conflict)."""
        if not self.broker.is_connected:
            raise NotSent("the message broker is unreachable; the job was not accepted")
        job_id = new_job_id()
        digest = raw_body if isinstance(raw_body, str) else hashlib.sha256(raw_body).hexdigest()
        # Read here: the store's thread does not see the request's trace context.
        trace = tracing.carrier().get(tracing.TRACEPARENT)
        existing = await self.store.transaction(
            lambda conn: self.insert(conn, tenant, job_id, job, idempotency_key, digest, trace)
        )
        if existing is not None:
            return existing
        if job.waiting:
            log.info("job.waiting", job_id=job_id, tenant=tenant, depends_on=job.depends_on)
            return Submission(job_id=job_id, state="waiting")
        if job.total == 0:
            return Submission(job_id=job_id, state="completed")
        try:
            notices = await self.lanes.open(job.lanes, tenant, job_id)
            await self.broker.publish(
                [*notices, *job.tasks(job_id)], timeout_s=self.publish_timeout_s
            )
            self.lanes.announced(notices)
            if job.task_windows is not None:
                async for window in job.task_windows(job_id):
                    await self.broker.publish(window, timeout_s=self.publish_timeout_s)
        except (BrokerUnavailable, OSError) as e:  # OSError: an upload's spool file unreadable
            reason = f"could not queue the job's tasks: {e}"
            log.error("job.publish_failed", job_id=job_id, error=str(e))
            await self.abandon(job_id, tenant, reason)
            raise NotSent(reason, job_id=job_id) from e
        except asyncio.CancelledError:
            # The gateway stopping mid-publish (a big upload's tasks take a while): the job
            # must not stay queued with part of its tasks sent.
            log.warning("job.publish_interrupted", job_id=job_id)
            await asyncio.shield(self.abandon(job_id, tenant, "the gateway stopped while queuing"))
            raise
        log.info("job.accepted", job_id=job_id, tenant=tenant, kind=job.kind, total=job.total)
        return Submission(job_id=job_id, state="queued")

    async def abandon(self, job_id: str, tenant: str, reason: str) -> None:
        """The job's tasks could not all be queued: it fails, and workers drop those that were."""
        await self.store.transaction(lambda conn: fail_job(conn, job_id, reason))
        await self.broadcast_stop(job_id, tenant, reason)

    async def broadcast_stop(self, job_id: str, tenant: str, reason: str) -> None:
        """Best effort: tasks may have landed although their confirms did not; tell the
        workers to drop them. If the broker is down, there is nobody to tell anyway."""
        stop = JobStopped(job_id=job_id, tenant=tenant, state="failed", reason=reason)
        try:
            await self.broker.publish([Publish(stop)], timeout_s=self.publish_timeout_s)
        except BrokerUnavailable as e:
            log.warning("job.stop_not_broadcast", job_id=job_id, error=str(e))

    def insert(
        self,
        conn: Connection,
        tenant: str,
        job_id: str,
        job: NewJob,
        idempotency_key: str | None,
        digest: str,
        traceparent: str | None = None,
    ) -> Submission | None:
        """Insert the job; or return the earlier job of the same idempotency key."""
        if idempotency_key is not None:
            earlier = replay_of(conn, tenant, idempotency_key, digest)
            if earlier is not None:
                return earlier
            conn.execute(
                "INSERT INTO idempotency_keys (tenant, key, job_id, body_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (tenant, idempotency_key, job_id, digest, epoch_s()),
            )
        refuse_over_quota(conn, tenant, job.charged, self.daily_quota_leads)
        refuse_csv_in_use(conn, tenant, job.spec.destinations)
        now = db_now(conn)  # the deadline is enforced by a router, maybe on another machine
        # A job with nothing to do is done at once (a dependency that found no leads).
        state = jobstate.initial_state(waiting=job.waiting, total=job.total)
        lock_job_seq(conn)
        conn.execute(
            "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at,"
            " timeout_s, depends_on, spec, progress_at, deadline_at, charged, traceparent,"
            " max_credits)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                tenant,
                job.kind,
                state,
                job.priority,
                job.total,
                utc_now(),
                job.timeout_s,
                job.depends_on,
                _encode(job.spec),
                now,
                now + job.timeout_s,
                job.charged,
                traceparent,
                job.max_credits,
            ),
        )
        conn.executemany(
            "INSERT INTO destinations (job_id, idx, type, name, secret) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    job_id,
                    idx,
                    dest.__struct_config__.tag,
                    dest.file_name if isinstance(dest, CsvDestination) else None,
                    job.sealed_secrets.get(idx),
                )
                for idx, dest in enumerate(job.spec.destinations)
            ],
        )
        if state == jobstate.COMPLETED:
            conn.execute("UPDATE jobs SET finished_at = created_at WHERE job_id = ?", (job_id,))
        if job.charged:
            conn.execute(
                "INSERT INTO quota_charges (tenant, day, job_id, leads) VALUES (?, ?, ?, ?)",
                (tenant, datetime.now(UTC).date().isoformat(), job_id, job.charged),
            )
        if job.deferred is not None:
            conn.execute(
                "INSERT INTO deferred_leads (job_id, leads) VALUES (?, ?)",
                (job_id, _encode(job.deferred)),
            )
        if job.record_with is not None:
            job.record_with(conn, job_id)
        return None


def replay_of(conn: Connection, tenant: str, key: str, digest: str) -> Submission | None:
    row = conn.execute(
        "SELECT i.job_id, i.body_hash, i.created_at, j.state FROM idempotency_keys i"
        " JOIN jobs j ON j.job_id = i.job_id WHERE i.tenant = ? AND i.key = ?",
        (tenant, key),
    ).fetchone()
    if row is None:
        return None
    if row["created_at"] < epoch_s() - IDEMPOTENCY_TTL_S:
        conn.execute("DELETE FROM idempotency_keys WHERE tenant = ? AND key = ?", (tenant, key))
        return None
    if row["body_hash"] != digest:
        raise IdempotencyConflict(job_id=row["job_id"])
    return Submission(job_id=row["job_id"], state=row["state"], replayed=True)


def refuse_over_quota(conn: Connection, tenant: str, charged: int, quota: int) -> None:
    """A tenant's jobs of today may take at most `quota` leads (0: no quota). Charges are
    kept apart from the jobs, so deleting a job does not give its leads back."""
    if quota <= 0:
        return
    today = datetime.now(UTC).date()
    used = conn.execute(
        "SELECT COALESCE(SUM(leads), 0) FROM quota_charges WHERE tenant = ? AND day = ?",
        (tenant, today.isoformat()),
    ).fetchone()[0]
    if used + charged > quota:
        midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
        retry_after = int((midnight - datetime.now(UTC)).total_seconds()) + 1
        raise QuotaExceeded(quota=quota, used=used, needed=charged, retry_after_s=retry_after)


def refuse_csv_in_use(conn: Connection, tenant: str, destinations: list[Destination]) -> None:
    for idx, dest in enumerate(destinations):
        if not isinstance(dest, CsvDestination):
            continue
        busy = conn.execute(
            "SELECT j.job_id FROM destinations d JOIN jobs j ON j.job_id = d.job_id"
            " WHERE j.tenant = ? AND d.type = 'csv' AND d.name = ?"
            f" AND {jobstate.state_in(jobstate.UNFINISHED, 'j.state')} LIMIT 1",
            (tenant, dest.file_name),
        ).fetchone()
        if busy is not None:
            raise CsvInUse(index=idx, file_name=dest.file_name, job_id=busy[0])


def fail_job(conn: Connection, job_id: str, reason: str) -> None:
    """The job's tasks could not be queued: it fails, its quota charge is given back, and
    its idempotency key is freed so that a retry of the POST makes a new job."""
    jobstate.stop(conn, job_id, jobstate.FAILED, reason)
    conn.execute("DELETE FROM quota_charges WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM idempotency_keys WHERE job_id = ?", (job_id,))
