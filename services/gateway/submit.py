"""Accepting a job: record it, publish all of its tasks with confirms, only then answer.

If the tasks cannot all be confirmed by the broker, the job is marked `failed` with the
reason and the client gets 503: a job never sits `queued` with its tasks never sent.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass

import msgspec

from services.gateway.problems import Problem
from services.gateway.validation import EnrichJob
from shared.broker import Broker, Outgoing
from shared.errors import BrokerUnavailable
from shared.jobs import CsvDestination, Destination, JobSpec
from shared.logging import get_logger
from shared.messages import EnrichTask, LaneOpened
from shared.store import Store, epoch_s, utc_now

log = get_logger(__name__)
IDEMPOTENCY_TTL_S = 24 * 3600
ANNOUNCE_EVERY_S = 3600.0
KIND = "enrich"
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Submission:
    job_id: str
    state: str
    replayed: bool = False


def new_job_id() -> str:
    # Time-ordered, so ids sort roughly by creation; random tail for uniqueness.
    return f"job_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class JobSubmitter:
    def __init__(
        self, store: Store, broker: Broker, task_batch_size: int, publish_timeout_s: float
    ) -> None:
        self.store = store
        self.broker = broker
        self.task_batch_size = task_batch_size
        self.publish_timeout_s = publish_timeout_s
        self._announced: dict[str, float] = {}

    async def submit_enrich(
        self, tenant: str, job: EnrichJob, idempotency_key: str | None, raw_body: bytes
    ) -> Submission:
        if not self.broker.is_connected:
            raise Problem(
                503,
                "the message broker is unreachable; the job was not accepted",
                headers={"Retry-After": "5"},
            )
        job_id = new_job_id()
        digest = body_hash(raw_body)
        existing = await self.store.transaction(
            lambda conn: insert_job(conn, tenant, job_id, job, idempotency_key, digest)
        )
        if existing is not None:
            return existing
        try:
            await self.broker.ensure_lane(KIND, tenant)
            outgoing = [*self.lane_announcement(tenant, job_id), *self.tasks(tenant, job_id, job)]
            await self.broker.publish(outgoing, timeout_s=self.publish_timeout_s)
        except BrokerUnavailable as e:
            reason = f"could not queue the job's tasks: {e}"
            await self.store.transaction(lambda conn: fail_job(conn, job_id, reason))
            log.error("job.publish_failed", job_id=job_id, error=str(e))
            raise Problem(
                503, reason, extra={"job_id": job_id}, headers={"Retry-After": "5"}
            ) from e
        log.info("job.accepted", job_id=job_id, tenant=tenant, leads=len(job.leads))
        return Submission(job_id=job_id, state="queued")

    def lane_announcement(self, tenant: str, job_id: str) -> list[Outgoing]:
        """Tell the workers about the tenant's lane; again now and then, so a worker that
        starts after the control stream forgot the first announcement still learns it."""
        now = time.monotonic()
        if now - self._announced.get(tenant, -ANNOUNCE_EVERY_S) < ANNOUNCE_EVERY_S:
            return []
        self._announced[tenant] = now
        return [Outgoing(LaneOpened(job_id=job_id, tenant=tenant, kind=KIND))]

    def tasks(self, tenant: str, job_id: str, job: EnrichJob) -> list[Outgoing]:
        size = self.task_batch_size
        return [
            Outgoing(
                EnrichTask(job_id=job_id, tenant=tenant, leads=job.leads[i : i + size]),
                priority=job.request.priority,
            )
            for i in range(0, len(job.leads), size)
        ]


def insert_job(
    conn: sqlite3.Connection,
    tenant: str,
    job_id: str,
    job: EnrichJob,
    idempotency_key: str | None,
    digest: str,
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
    refuse_csv_in_use(conn, tenant, job.request.destinations)
    request = job.request
    spec = JobSpec(destinations=request.destinations)
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, timeout_s,"
        " depends_on, spec, progress_at, deadline_at)"
        " VALUES (?, ?, 'enrich', 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            tenant,
            request.priority,
            len(job.leads),
            utc_now(),
            job.timeout_s,
            request.depends_on,
            _encode(spec),
            epoch_s(),
            epoch_s() + job.timeout_s,
        ),
    )
    conn.executemany(
        "INSERT INTO destinations (job_id, idx, type, name) VALUES (?, ?, ?, ?)",
        [
            (
                job_id,
                idx,
                dest.__struct_config__.tag,
                dest.file_name if isinstance(dest, CsvDestination) else None,
            )
            for idx, dest in enumerate(spec.destinations)
        ],
    )
    return None


def replay_of(conn: sqlite3.Connection, tenant: str, key: str, digest: str) -> Submission | None:
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
        raise Problem(
            409,
            "this Idempotency-Key was used with a different request body",
            extra={"job_id": row["job_id"]},
        )
    return Submission(job_id=row["job_id"], state=row["state"], replayed=True)


def refuse_csv_in_use(
    conn: sqlite3.Connection, tenant: str, destinations: list[Destination]
) -> None:
    for idx, dest in enumerate(destinations):
        if not isinstance(dest, CsvDestination):
            continue
        busy = conn.execute(
            "SELECT j.job_id FROM destinations d JOIN jobs j ON j.job_id = d.job_id"
            " WHERE j.tenant = ? AND d.type = 'csv' AND d.name = ?"
            " AND j.state NOT IN ('completed', 'failed', 'cancelled', 'timed_out') LIMIT 1",
            (tenant, dest.file_name),
        ).fetchone()
        if busy is not None:
            raise Problem(
                409,
                f"destinations[{idx}].name: {dest.file_name} is being written by job {busy[0]}",
                extra={"job_id": busy[0]},
            )


def fail_job(conn: sqlite3.Connection, job_id: str, reason: str) -> None:
    conn.execute(
        "UPDATE jobs SET state = 'failed', error = ?, finished_at = ?"
        " WHERE job_id = ? AND state IN ('queued', 'waiting', 'running')",
        (reason, utc_now(), job_id),
    )
