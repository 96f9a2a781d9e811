"""Job dependencies: a `waiting` job starts when the job it depends on completes (with its
own leads, or the completed job's results), and fails, naming it, when that job fails,
is cancelled or times out."""

from __future__ import annotations

from functools import partial

import msgspec

from shared import jobstate, tracing
from shared.broker import Broker
from shared.dbapi import Connection
from shared.jobs import JobSpec
from shared.logging import get_logger
from shared.messages import Lead
from shared.store import Store, decode_spec, job_result_leads
from shared.tasks import Lanes, enrich_tasks

log = get_logger(__name__)
_decode_leads = msgspec.json.Decoder(list[Lead]).decode


class DependencyKeeper:
    def __init__(self, store: Store, broker: Broker, task_batch_size: int) -> None:
        self.store = store
        self.broker = broker
        self.lanes = Lanes(broker)
        self.task_batch_size = task_batch_size

    async def check(self) -> None:
        for job_id, tenant, priority, dependency, state, trace in await self.store.run(
            waiting_jobs
        ):
            if state == jobstate.COMPLETED:
                # The job's own trace, begun by its POST, goes on with its tasks.
                with tracing.span(
                    "release job",
                    parent=tracing.stored(trace),
                    job_id=job_id,
                    depends_on=dependency,
                ):
                    await self.release(job_id, tenant, priority, dependency)
            elif state in jobstate.STOPPED:
                reason = f"the job it depends on, {dependency}, {state.replace('_', ' ')}"
                if await self.store.transaction(
                    partial(jobstate.stop, job_id=job_id, state=jobstate.FAILED, reason=reason)
                ):
                    log.warning("job.dependency_failed", job_id=job_id, depends_on=dependency)

    async def release(self, job_id: str, tenant: str, priority: str, dependency: str) -> None:
        """Publish the job's tasks, then mark it queued (a crash in between publishes them
        again on the next round: the outcomes of a lead are recorded once anyway)."""
        leads = await self.store.run(partial(leads_for, job_id=job_id, dependency=dependency))
        notices = await self.lanes.open(("enrich",), tenant, job_id)
        spec = await self.store.run(partial(job_spec, job_id=job_id))
        tasks = enrich_tasks(
            job_id, tenant, leads, self.task_batch_size, priority, spec.email_policy
        )
        await self.broker.publish([*notices, *tasks])
        self.lanes.announced(notices)
        await self.store.transaction(partial(mark_released, job_id=job_id, total=len(leads)))
        log.info("job.released", job_id=job_id, depends_on=dependency, leads=len(leads))


def job_spec(conn: Connection, job_id: str) -> JobSpec:
    row = conn.execute("SELECT spec FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return decode_spec(row[0]) if row is not None and row[0] else JobSpec()


def waiting_jobs(conn: Connection) -> list[tuple[str, str, str, str, str, str | None]]:
    rows = conn.execute(
        "SELECT w.job_id, w.tenant, w.priority, w.depends_on, d.state, w.traceparent FROM jobs w"
        " JOIN jobs d ON d.job_id = w.depends_on WHERE w.state = ?",
        (jobstate.WAITING,),
    ).fetchall()
    return [tuple(row) for row in rows]


def leads_for(conn: Connection, job_id: str, dependency: str) -> list[Lead]:
    own = conn.execute("SELECT leads FROM deferred_leads WHERE job_id = ?", (job_id,)).fetchone()
    return _decode_leads(own[0]) if own is not None else job_result_leads(conn, dependency)


def mark_released(conn: Connection, job_id: str, total: int) -> None:
    jobstate.release_waiting(conn, job_id, total)
    conn.execute("DELETE FROM deferred_leads WHERE job_id = ?", (job_id,))
