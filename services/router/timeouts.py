"""Job deadlines: a job still unfinished at `created + timeout_s` is stopped like a
cancel (the stop is broadcast to the workers) and ends `timed_out`."""

from __future__ import annotations

import sqlite3
from functools import partial

from shared.broker import Broker, Outgoing
from shared.logging import get_logger
from shared.messages import JobStopped
from shared.store import Store, epoch_s, stop_job

log = get_logger(__name__)


class DeadlineKeeper:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def check(self) -> None:
        expired = await self.store.run(lambda conn: past_deadline(conn, epoch_s()))
        for job_id, tenant, timeout_s in expired:
            reason = f"timed out after {timeout_s}s"
            # Broadcast first: if the broker is down this raises and the next round retries.
            stop = JobStopped(job_id=job_id, tenant=tenant, state="timed_out", reason=reason)
            await self.broker.publish([Outgoing(stop)])
            stopped = partial(stop_job, job_id=job_id, state="timed_out", reason=reason)
            if await self.store.transaction(stopped):
                log.warning("job.timed_out", job_id=job_id, timeout_s=timeout_s)


def past_deadline(conn: sqlite3.Connection, now: float) -> list[tuple[str, str, int]]:
    rows = conn.execute(
        "SELECT job_id, tenant, timeout_s FROM jobs"
        " WHERE state IN ('queued', 'waiting', 'running') AND deadline_at < ?",
        (now,),
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]
