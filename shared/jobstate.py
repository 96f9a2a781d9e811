"""The job state machine: the states, the moves allowed between them, and the one SQL
statement behind each move. Nothing else writes `jobs.state`.

    waiting --released--> queued --first outcome--> running --every lead out--> completed
    queued --nothing to do--> completed          (a job with no leads ends at once)
    waiting --first outcome--> running           (a release whose mark did not commit)
    queued | running --budget--> paused --resume--> queued | running
    any unfinished state --stop--> failed | cancelled        (timed_out: not from paused)

A job is created `waiting`, `queued` or `completed` (`initial_state`). `completed`,
`failed`, `cancelled` and `timed_out` are terminal: no move leaves them. The last three
are "stopped" (ended before every lead had an outcome): their counts stay where they
were and their destinations get nothing more.

Every move is one conditional `UPDATE … WHERE state IN (<the states it may come from>)`,
with those states taken from `TRANSITIONS`; a move the job's current state does not
allow changes nothing and answers False. So two writers racing (the router completing a
job the user is cancelling, two routers during a failover) leave one consistent state:
a terminal state never changes, a stopped job stays stopped. Reads that select jobs by
state build their condition with `state_in` from the sets defined here.

`started_at` is stamped by the progress that starts a job (services/router/ledger.py);
`finished_at` by the move that ends it, here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shared.clock import epoch_s, utc_now
from shared.dbapi import Connection

WAITING: Final = "waiting"
QUEUED: Final = "queued"
RUNNING: Final = "running"
# A credit budget stopped the job (`pause`) until the user resumes it (`resume`).
PAUSED: Final = "paused"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
TIMED_OUT: Final = "timed_out"

STATES: tuple[str, ...] = (
    QUEUED,
    WAITING,
    RUNNING,
    PAUSED,
    COMPLETED,
    FAILED,
    CANCELLED,
    TIMED_OUT,
)

TRANSITIONS: dict[str, frozenset[str]] = {
    # A job released (or its first outcome, when its release did not commit).
    WAITING: frozenset({QUEUED, RUNNING, FAILED, CANCELLED, TIMED_OUT}),
    QUEUED: frozenset({RUNNING, COMPLETED, PAUSED, FAILED, CANCELLED, TIMED_OUT}),
    RUNNING: frozenset({COMPLETED, PAUSED, FAILED, CANCELLED, TIMED_OUT}),
    # A paused job holds no message and does not time out; resumed, its work is queued again.
    PAUSED: frozenset({QUEUED, RUNNING, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    TIMED_OUT: frozenset(),
}


def sources(to: str) -> tuple[str, ...]:
    """The states a job may move to `to` from, in `STATES` order."""
    return tuple(state for state in STATES if to in TRANSITIONS[state])


TERMINAL: frozenset[str] = frozenset(state for state in STATES if not TRANSITIONS[state])
UNFINISHED: tuple[str, ...] = tuple(state for state in STATES if state not in TERMINAL)
STOPPED: frozenset[str] = TERMINAL - {COMPLETED}
# Unfinished jobs whose deadline runs (a paused one's does not).
TIMING_OUT: tuple[str, ...] = sources(TIMED_OUT)
# Unfinished jobs whose work is expected to move (stall detection watches these): not a
# waiting one (its work is not published yet) nor a paused one (stopped on purpose).
WORKING: tuple[str, ...] = (QUEUED, RUNNING)


def can_move(current: str, to: str) -> bool:
    return to in TRANSITIONS[current]


def state_in(states: Iterable[str], column: str = "state") -> str:
    """An SQL condition `column IN ('a', 'b')` for some of these states.

    Literals, not parameters: the names are this module's constants, never input, and a
    literal list lets the planner use the state index."""
    wanted = set(states)
    unknown = wanted - set(STATES)
    if unknown or not wanted:
        raise ValueError(f"not job states: {sorted(unknown) or 'none given'}")
    names = ", ".join(f"'{state}'" for state in STATES if state in wanted)
    return f"{column} IN ({names})"


def _from(to: str, came_from: Iterable[str]) -> str:
    """The state condition of a move to `to` from `came_from`, each of which must allow it."""
    states = tuple(came_from)
    refused = [state for state in states if not can_move(state, to)]
    if refused:
        raise ValueError(f"a job cannot move from {', '.join(refused)} to {to}")
    return state_in(states)


def initial_state(*, waiting: bool, total: int | None) -> str:
    """A new job waits for the job it depends on, or is queued, or, with nothing to do
    (a dependency that found no leads), is completed at once."""
    if waiting:
        return WAITING
    return COMPLETED if total == 0 else QUEUED


def mark_running(conn: Connection, job_id: str) -> bool:
    """The first outcome of a queued (or waiting) job arrived."""
    return _update(conn, job_id, RUNNING, (QUEUED, WAITING), "", ())


def complete_if_done(conn: Connection, job_id: str) -> bool:
    """A running job whose every lead has an outcome is completed."""
    return _complete(conn, job_id, (RUNNING,))


def release_waiting(conn: Connection, job_id: str, total: int) -> bool:
    """A waiting job's tasks are published: it is queued with `total` leads, and with
    none it is completed at once. False if it was not waiting any more."""
    released = _update(
        conn, job_id, QUEUED, (WAITING,), ", total = ?, progress_at = ?", (total, epoch_s())
    )
    if total == 0:
        _complete(conn, job_id, (QUEUED,))
    return released


def pause(conn: Connection, job_id: str, reason: str) -> bool:
    """A credit budget stops a queued or running job (`reason`: "budget" or
    "tenant_budget"). False if it was not working any more (or already paused)."""
    return _update(
        conn,
        job_id,
        PAUSED,
        (QUEUED, RUNNING),
        ", paused_reason = ?, paused_at = ?",
        (reason, epoch_s()),
    )


def resume(conn: Connection, job_id: str, max_credits: int | None) -> bool:
    """A paused job goes on with a new cap: running again if it had started, else queued.
    Its deadline moves by the time it was paused (a paused job does not time out). A job
    whose last leads came in while it was paused (answered from the cache) completes."""
    row = conn.execute(
        "SELECT started_at, paused_at FROM jobs WHERE job_id = ?", (job_id,)
    ).fetchone()
    if row is None:
        return False
    to = RUNNING if row[0] else QUEUED
    paused_s = max(0.0, epoch_s() - row[1]) if row[1] is not None else 0.0
    moved = _update(
        conn,
        job_id,
        to,
        (PAUSED,),
        ", paused_reason = NULL, paused_at = NULL, max_credits = ?, deadline_at = deadline_at + ?",
        (max_credits, paused_s),
    )
    if moved and to == RUNNING:
        complete_if_done(conn, job_id)
    return moved


def stop(conn: Connection, job_id: str, state: str, reason: str) -> bool:
    """End an unfinished job as `state` (failed, cancelled or timed out) with `reason`;
    its pending webhook batches are cancelled. False if it could not move to `state`
    (it had finished already, or a paused job cannot time out)."""
    if state not in STOPPED:
        raise ValueError(f"{state} is not a state a job is stopped in")
    stopped = _update(
        conn,
        job_id,
        state,
        sources(state),
        ", error = ?, finished_at = ?, stalled = 0, stall_reason = NULL",
        (reason, utc_now()),
    )
    if stopped:
        conn.execute(
            "UPDATE webhook_batches SET state = 'cancelled' WHERE job_id = ? AND state = 'pending'",
            (job_id,),
        )
    return stopped


def _complete(conn: Connection, job_id: str, came_from: tuple[str, ...]) -> bool:
    return _update(
        conn,
        job_id,
        COMPLETED,
        came_from,
        ", finished_at = ?, cooling_down_until = NULL",
        (utc_now(),),
        " AND total IS NOT NULL AND done >= total",
    )


def _update(
    conn: Connection,
    job_id: str,
    to: str,
    came_from: tuple[str, ...],
    also_set: str,
    values: tuple[object, ...],
    condition: str = "",
) -> bool:
    """The one statement that changes a job's state: `also_set` (fixed SQL, with
    `values` for its parameters) changes with it."""
    sql = (
        f"UPDATE jobs SET state = ?{also_set}"
        f" WHERE job_id = ? AND {_from(to, came_from)}{condition}"
    )
    return bool(conn.execute(sql, (to, *values, job_id)).rowcount)
