"""Job deadlines: a job still unfinished at `created + timeout_s` is stopped like a
cancel (the stop is broadcast to the workers) and ends `timed_out`.

Time the store could not be written does not count against a job: the router could not
record the outcomes that arrived meanwhile, so a deadline moves by the length of every
store outage this router saw (`Store.take_outage_s`). A job times out because its work
did not finish, never because its results could not be written down.
"""

from __future__ import annotations

from functools import partial

from shared import jobstate
from shared.broker import Broker, Publish
from shared.dbapi import Connection
from shared.logging import get_logger
from shared.messages import JobStopped
from shared.store import Store, db_now

log = get_logger(__name__)
TIMING_OUT = jobstate.state_in(jobstate.TIMING_OUT)


class DeadlineKeeper:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def check(self) -> None:
        if self.store.unavailable_reason is not None:
            return  # a stop now could not be recorded; the outage moves deadlines anyway
        outage_s = self.store.take_outage_s()
        # A write transaction: the store takes writes now, so a stop broadcast below can
        # be recorded too (a broadcast job that stays running would lose its tasks).
        expired = await self.store.transaction(partial(extend_and_find_expired, outage_s=outage_s))
        if outage_s:
            log.warning("deadlines.extended_for_store_outage", seconds=round(outage_s, 1))
        for job_id, tenant, timeout_s in expired:
            reason = f"timed out after {timeout_s}s"
            # Broadcast first: if the broker is down this raises and the next round retries.
            stop = JobStopped(job_id=job_id, tenant=tenant, state=jobstate.TIMED_OUT, reason=reason)
            await self.broker.publish([Publish(stop)])
            stopped = partial(jobstate.stop, job_id=job_id, state=jobstate.TIMED_OUT, reason=reason)
            if await self.store.transaction(stopped):
                log.warning("job.timed_out", job_id=job_id, timeout_s=timeout_s)


def extend_and_find_expired(
    conn: Connection, outage_s: float, now: float | None = None
) -> list[tuple[str, str, int]]:
    if outage_s > 0:
        extend_deadlines(conn, outage_s)
    # Deadlines are set and compared in the database's time (the gateway that set one and
    # the router that enforces it may run on machines with skewed clocks).
    return past_deadline(conn, db_now(conn) if now is None else now)


def extend_deadlines(conn: Connection, seconds: float) -> None:
    conn.execute(
        "UPDATE jobs SET deadline_at = deadline_at + ?"
        f" WHERE {TIMING_OUT} AND deadline_at IS NOT NULL",
        (seconds,),
    )


def past_deadline(conn: Connection, now: float) -> list[tuple[str, str, int]]:
    rows = conn.execute(
        f"SELECT job_id, tenant, timeout_s FROM jobs WHERE {TIMING_OUT} AND deadline_at < ?",
        (now,),
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]
