"""The job state machine (shared/jobstate.py): every move it allows and every one it
refuses, in the table and in the store; and that nothing else writes a job's state."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared import jobstate
from shared.dbapi import Connection
from shared.jobs import JOB_STATES
from shared.store import MIGRATIONS, migrate

ROOT = Path(__file__).resolve().parents[2]
UNFINISHED = {"queued", "waiting", "running", "paused"}
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
STOPS = {"failed", "cancelled", "timed_out"}
# The machine as DESIGN.md describes it, written out independently of the module.
ALLOWED = {
    ("waiting", "queued"),
    ("waiting", "running"),
    ("queued", "running"),
    ("queued", "completed"),
    ("queued", "paused"),
    ("running", "completed"),
    ("running", "paused"),
    ("paused", "queued"),
    ("paused", "running"),
    *((state, stop) for state in ("waiting", "queued", "running") for stop in STOPS),
    ("paused", "failed"),
    ("paused", "cancelled"),
}


@pytest.fixture
def conn() -> Iterator[Connection]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.row_factory = sqlite3.Row
    migrate(db, MIGRATIONS)
    yield db
    db.close()


def add_job(conn: Connection, state: str, *, total: int | None = 2, done: int = 0) -> str:
    job_id = f"job_{state}"
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, done, created_at,"
        " spec, error) VALUES (?, 't', 'enrich', ?, 'normal', ?, ?, '2026-01-01T00:00:00Z',"
        " x'7b7d', ?)",
        (job_id, state, total, done, "earlier" if state in TERMINAL else None),
    )
    return job_id


def row(conn: Connection, job_id: str) -> sqlite3.Row:
    found: sqlite3.Row = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return found


def test_the_table_allows_exactly_the_designed_moves() -> None:
    assert set(jobstate.STATES) == UNFINISHED | TERMINAL
    for current in jobstate.STATES:
        for to in jobstate.STATES:
            assert jobstate.can_move(current, to) == ((current, to) in ALLOWED), (current, to)


def test_state_sets() -> None:
    assert jobstate.TERMINAL == TERMINAL
    assert set(jobstate.UNFINISHED) == UNFINISHED
    assert jobstate.STOPPED == STOPS
    # A paused job does not time out, and is not stalled: it stopped on purpose.
    assert set(jobstate.TIMING_OUT) == {"queued", "waiting", "running"}
    assert set(jobstate.WORKING) == {"queued", "running"}
    # The API lists every state.
    assert set(JOB_STATES) == set(jobstate.STATES)


def test_initial_state() -> None:
    assert jobstate.initial_state(waiting=True, total=None) == "waiting"
    assert jobstate.initial_state(waiting=True, total=0) == "waiting"
    assert jobstate.initial_state(waiting=False, total=0) == "completed"
    assert jobstate.initial_state(waiting=False, total=5) == "queued"
    assert jobstate.initial_state(waiting=False, total=None) == "queued"  # a scrape


Move = Callable[[Connection, str], bool]


def stopping(state: str) -> Move:
    return lambda conn, job_id: jobstate.stop(conn, job_id, state, "why")


MOVES: dict[str, tuple[Move, str, set[str]]] = {
    # name: (move, the state it leads to, the states it moves a job from)
    "mark_running": (jobstate.mark_running, "running", {"queued", "waiting"}),
    "complete_if_done": (jobstate.complete_if_done, "completed", {"running"}),
    "release_waiting": (
        lambda c, j: jobstate.release_waiting(c, j, total=2),
        "queued",
        {"waiting"},
    ),
    **{
        f"stop_{stop}": (
            stopping(stop),
            stop,
            UNFINISHED - ({"paused"} if stop == "timed_out" else set()),
        )
        for stop in sorted(STOPS)
    },
}


@pytest.mark.parametrize("name", sorted(MOVES))
@pytest.mark.parametrize("state", sorted(UNFINISHED | TERMINAL))
def test_every_move_from_every_state(conn: Connection, name: str, state: str) -> None:
    move, to, came_from = MOVES[name]
    job_id = add_job(conn, state, total=2, done=2)  # complete_if_done's condition holds
    before = dict(row(conn, job_id))

    moved = move(conn, job_id)

    after = dict(row(conn, job_id))
    if state in came_from:
        assert moved
        assert after["state"] == to
        assert (state, to) in ALLOWED
    else:
        # Refused: the job is left exactly as it was (a terminal state never changes).
        assert not moved
        assert after == before


def test_a_stopped_job_stays_stopped(conn: Connection) -> None:
    job_id = add_job(conn, "running")
    assert jobstate.stop(conn, job_id, "cancelled", "cancelled by the user")
    stopped = dict(row(conn, job_id))
    assert stopped["finished_at"] is not None

    assert not jobstate.stop(conn, job_id, "timed_out", "timed out after 60s")
    assert not jobstate.stop(conn, job_id, "failed", "a worker failed it")
    assert not jobstate.mark_running(conn, job_id)
    conn.execute("UPDATE jobs SET done = total WHERE job_id = ?", (job_id,))
    assert not jobstate.complete_if_done(conn, job_id)
    after = dict(row(conn, job_id))
    assert (after["state"], after["error"], after["finished_at"]) == (
        "cancelled",
        "cancelled by the user",
        stopped["finished_at"],
    )


@pytest.mark.parametrize("state", ["queued", "running", "completed", "paused", "waiting"])
def test_stop_refuses_a_state_that_is_not_a_stop(conn: Connection, state: str) -> None:
    job_id = add_job(conn, "running")
    with pytest.raises(ValueError, match="not a state a job is stopped in"):
        jobstate.stop(conn, job_id, state, "why")
    assert row(conn, job_id)["state"] == "running"


def test_stop_clears_the_stall_and_cancels_pending_webhook_batches(
    conn: Connection,
) -> None:
    job_id = add_job(conn, "running")
    conn.execute("UPDATE jobs SET stalled = 1, stall_reason = 'quiet' WHERE job_id = ?", (job_id,))
    for batch_no, state in enumerate(("pending", "delivered")):
        conn.execute(
            "INSERT INTO webhook_batches (job_id, dest_idx, batch_no, webhook_id, first_seq,"
            " last_seq, size, state, created_at, next_attempt_at) VALUES (?, 0, ?, 'w', 1, 1,"
            " 1, ?, 0, 0)",
            (job_id, batch_no, state),
        )
    assert jobstate.stop(conn, job_id, "timed_out", "timed out after 60s")
    job = row(conn, job_id)
    assert (job["state"], job["error"], job["stalled"], job["stall_reason"]) == (
        "timed_out",
        "timed out after 60s",
        0,
        None,
    )
    batches = [r[0] for r in conn.execute("SELECT state FROM webhook_batches ORDER BY batch_no")]
    assert batches == ["cancelled", "delivered"]


def test_a_refused_stop_leaves_webhook_batches_alone(conn: Connection) -> None:
    job_id = add_job(conn, "completed")
    conn.execute(
        "INSERT INTO webhook_batches (job_id, dest_idx, batch_no, webhook_id, first_seq,"
        " last_seq, size, created_at, next_attempt_at) VALUES (?, 0, 0, 'w', 1, 1, 1, 0, 0)",
        (job_id,),
    )
    assert not jobstate.stop(conn, job_id, "cancelled", "too late")
    assert conn.execute("SELECT state FROM webhook_batches").fetchone()[0] == "pending"


@pytest.mark.parametrize(("total", "done"), [(None, 3), (3, 2)])
def test_complete_if_done_waits_for_every_lead(
    conn: Connection, total: int | None, done: int
) -> None:
    job_id = add_job(conn, "running", total=total, done=done)
    assert not jobstate.complete_if_done(conn, job_id)
    assert row(conn, job_id)["state"] == "running"


def test_complete_if_done_stamps_the_end_and_clears_a_cooldown(conn: Connection) -> None:
    job_id = add_job(conn, "running", total=2, done=2)
    conn.execute("UPDATE jobs SET cooling_down_until = 99 WHERE job_id = ?", (job_id,))
    assert jobstate.complete_if_done(conn, job_id)
    job = row(conn, job_id)
    assert job["finished_at"] is not None
    assert job["cooling_down_until"] is None


def test_release_waiting_queues_with_the_total(conn: Connection) -> None:
    job_id = add_job(conn, "waiting", total=None)
    assert jobstate.release_waiting(conn, job_id, total=7)
    job = row(conn, job_id)
    assert (job["state"], job["total"], job["finished_at"]) == ("queued", 7, None)
    assert job["progress_at"] is not None


def test_release_waiting_with_nothing_to_do_completes_at_once(conn: Connection) -> None:
    job_id = add_job(conn, "waiting", total=None)
    assert jobstate.release_waiting(conn, job_id, total=0)
    job = row(conn, job_id)
    assert (job["state"], job["total"]) == ("completed", 0)
    assert job["finished_at"] is not None


def test_state_in_builds_the_condition_from_the_definition() -> None:
    assert jobstate.state_in(["running", "queued"]) == "state IN ('queued', 'running')"
    assert jobstate.state_in(jobstate.TERMINAL, "j.state") == (
        "j.state IN ('completed', 'failed', 'cancelled', 'timed_out')"
    )
    with pytest.raises(ValueError, match="not job states"):
        jobstate.state_in(["queued", "stuck"])
    with pytest.raises(ValueError, match="not job states"):
        jobstate.state_in([])


def sources() -> Iterator[Path]:
    for folder in ("shared", "services"):
        yield from (ROOT / folder).rglob("*.py")


def test_nothing_else_writes_a_job_state() -> None:
    """Every `UPDATE jobs SET …` outside the state machine leaves `state` alone."""
    update = re.compile(r"UPDATE jobs SET(.*?)WHERE", re.DOTALL)
    for path in sources():
        if path == ROOT / "shared" / "jobstate.py":
            continue
        for match in update.finditer(path.read_text(encoding="utf-8")):
            assert not re.search(r"\bstate\s*=", match[1]), f"{path}: {match[0]!r}"


def test_unfinished_states_are_named_in_sql_only_by_the_state_machine() -> None:
    """The unfinished states appear in no SQL literal elsewhere: conditions on them are
    built with `jobstate.state_in`."""
    literal = re.compile(r"'(queued|waiting|running|paused)'")
    for path in sources():
        if path == ROOT / "shared" / "jobstate.py":
            continue
        found = literal.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path} names {found} in SQL"
