"""The credit ledger's transactions on a real SQLite store: reservations within the job's
cap and the tenant's daily budget (a partial grant pauses the job), settlement once, free
vendor repeats, parked tasks of paused jobs, and resume."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from datetime import date

import pytest

from shared import credits, jobstate
from shared.clock import epoch_s
from shared.credits import Reservation, Settlement
from shared.dbapi import Connection
from shared.store import MIGRATIONS, migrate

DAY = "2026-12-03"


@pytest.fixture
def conn() -> Iterator[Connection]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.row_factory = sqlite3.Row
    migrate(db, MIGRATIONS)
    yield db
    db.close()


def add_job(conn: Connection, job_id: str, max_credits: int | None) -> None:
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, spec,"
        " max_credits) VALUES (?, 't', 'enrich', 'running', 'normal', 100,"
        " '2026-01-01T00:00:00Z', x'7b7d', ?)",
        (job_id, max_credits),
    )


def call(job_id: str, leads: int, n: int = 0, provider: str = "pdl") -> Reservation:
    return Reservation(
        call_id=f"{job_id}-{n}",
        job_id=job_id,
        tenant="t",
        provider=provider,
        key_id="k",
        day=DAY,
        leads=leads,
    )


def job(conn: Connection, job_id: str) -> sqlite3.Row:
    """The job's row with its credit counters (`credits`, `credits_committed`)."""
    found: sqlite3.Row = conn.execute(
        # First: a row read by name gives the first column of that name (jobs has the
        # old, no longer written `credits` and `credits_committed`).
        "SELECT COALESCE(c.credits, 0) AS credits, COALESCE(c.committed, 0)"
        " AS credits_committed, j.* FROM jobs j LEFT JOIN job_credits c ON c.job_id = j.job_id"
        " WHERE j.job_id = ?",
        (job_id,),
    ).fetchone()
    return found


def test_a_call_gets_what_the_cap_leaves_and_the_job_pauses(conn: Connection) -> None:
    add_job(conn, "j", 30)
    assert credits.reserve(conn, call("j", 25, 0), 0) == credits.Grant(25)
    assert credits.reserve(conn, call("j", 25, 1), 0) == credits.Grant(5, "budget")
    assert job(conn, "j")["state"] == "paused"
    assert job(conn, "j")["paused_reason"] == "budget"
    # Paused: nothing more, whatever the room.
    assert credits.reserve(conn, call("j", 1, 2), 0) == credits.Grant(0, "budget")
    # Settled below what was held: the commitment drops to what was spent.
    assert credits.settle(conn, "j-0", Settlement(credits={"match": 10}, found=10, emails=9)) == 10
    assert credits.settle(conn, "j-0", Settlement(credits={"match": 10}, found=10, emails=9)) == 0
    assert credits.settle(conn, "j-1", Settlement(credits={"match": 2}, found=2, emails=2)) == 2
    assert (job(conn, "j")["credits"], job(conn, "j")["credits_committed"]) == (12, 12)
    day = date.fromisoformat(DAY)
    assert credits.credits_by_day(conn, "t", day, day) == [(DAY, "pdl", "match", 12)]


def test_the_tenant_budget_binds_every_job_of_the_tenant(conn: Connection) -> None:
    add_job(conn, "a", None)
    add_job(conn, "b", None)
    assert credits.reserve(conn, call("a", 8, 0), 10) == credits.Grant(8)
    assert credits.reserve(conn, call("b", 8, 0), 10) == credits.Grant(2, "tenant_budget")
    assert job(conn, "b")["paused_reason"] == "tenant_budget"
    # `a` spends less than it held: the room comes back to the tenant.
    credits.settle(conn, "a-0", Settlement(credits={}, found=0, emails=0))
    assert credits.reserve(conn, call("a", 8, 1), 10) == credits.Grant(8)


def test_a_repeat_the_vendor_does_not_charge_is_free(conn: Connection) -> None:
    add_job(conn, "j", None)
    for n in range(2):
        credits.reserve(conn, call("j", 1, n, "hunter"), 0)
        once = Settlement(credits={"search": 1}, found=1, emails=1, once=(("search", "fp"),))
        assert credits.settle(conn, f"j-{n}", once) == 1 - n


def test_parked_tasks_wait_for_the_resume(conn: Connection) -> None:
    add_job(conn, "j", 1)
    assert not credits.park_task(conn, "t0", "j", b"{}")  # running: nothing to park
    credits.reserve(conn, call("j", 2), 0)
    assert credits.park_task(conn, "t1", "j", b"{}")
    assert [task_id for task_id, _ in credits.parked_tasks(conn, "j")] == ["t1"]
    assert jobstate.resume(conn, "j", 50)
    assert (job(conn, "j")["state"], job(conn, "j")["max_credits"]) == ("queued", 50)
    assert not credits.park_task(conn, "t2", "j", b"{}")  # resumed: back to the broker
    assert not jobstate.resume(conn, "j", 60)


def test_a_completed_job_spends_for_a_replay_of_its_dead_letters_within_its_cap(
    conn: Connection,
) -> None:
    add_job(conn, "j", 10)
    conn.execute("UPDATE jobs SET state = 'completed' WHERE job_id = 'j'")
    assert credits.reserve(conn, call("j", 4, 0), 0) == credits.Grant(4)
    # Over its cap it cannot pause (it is finished): the call is refused, saying why.
    refused = credits.reserve(conn, call("j", 25, 1), 0)
    assert refused == credits.Grant(6, "the job's credit budget is spent")
    assert job(conn, "j")["state"] == "completed"


def test_a_cancelled_job_spends_nothing(conn: Connection) -> None:
    add_job(conn, "j", None)
    conn.execute("UPDATE jobs SET state = 'cancelled' WHERE job_id = 'j'")
    assert credits.reserve(conn, call("j", 4, 0), 0) == credits.Grant(0, "the job is cancelled")


def asking(job_id: str, requests: tuple[str, ...], provider: str = "pdl") -> Reservation:
    """A call of the enricher's: its id names what it asks."""
    return Reservation(
        call_id=credits.new_call_id(job_id, provider, requests),
        job_id=job_id,
        tenant="t",
        provider=provider,
        key_id="k0",
        day=DAY,
        leads=len(requests),
        requests=requests,
    )


def tenant_committed(conn: Connection) -> int:
    return int(conn.execute("SELECT committed FROM tenant_credits").fetchone()[0])


@pytest.mark.parametrize(("lost_charged", "spent"), [(True, 6), (False, 3)])
def test_a_call_lost_in_a_crash_is_settled_by_the_redelivered_same_call(
    conn: Connection, lost_charged: bool, spent: int
) -> None:
    add_job(conn, "j", 100)
    asked = ("a", "b", "c", "d")
    lost = credits.reserve(conn, asking("j", asked), 0)  # its enricher is killed
    other = credits.reserve(conn, asking("j", ("e",)), 0)  # another lead's, in flight
    again = credits.reserve(conn, asking("j", tuple(reversed(asked))), 0)
    assert lost.call_id.split(".")[0] == again.call_id.split(".")[0] != lost.call_id
    assert (job(conn, "j")["credits_committed"], tenant_committed(conn)) == (9, 9)

    paid = Settlement(credits={"match": 3}, found=3, emails=3, lost_charged=lost_charged)
    assert credits.settle(conn, again.call_id, paid) == 3
    # The lost call is settled too, at what the vendor charged for it; the other call,
    # asking something else, is still in flight.
    assert (job(conn, "j")["credits"], job(conn, "j")["credits_committed"]) == (spent, spent + 1)
    assert tenant_committed(conn) == spent + 1
    assert credits.settle(conn, lost.call_id, paid) == 0  # it was, once
    assert credits.settle(conn, other.call_id, Settlement({"match": 1}, 1, 1)) == 1


def test_a_lost_call_nobody_asks_again_has_its_hold_released(conn: Connection) -> None:
    add_job(conn, "j", 10)
    lost = credits.reserve(conn, asking("j", ("a", "b", "c")), 0)
    credits.reserve(conn, asking("j", ("d",)), 0)
    assert job(conn, "j")["credits_committed"] == 4
    conn.execute(
        "UPDATE credit_calls SET reserved_at = reserved_at - ? WHERE call_id = ?",
        (credits.LOST_AFTER_S + 1, lost.call_id),
    )
    assert credits.release_lost(conn, epoch_s() - credits.LOST_AFTER_S) == 1
    assert (job(conn, "j")["credits_committed"], tenant_committed(conn)) == (1, 1)
    assert credits.release_lost(conn, epoch_s() - credits.LOST_AFTER_S) == 0
    # Only slow after all: what it cost still counts.
    assert credits.settle(conn, lost.call_id, Settlement({"match": 2}, 2, 2)) == 2
    assert (job(conn, "j")["credits"], job(conn, "j")["credits_committed"]) == (2, 3)


def test_the_ledger_names_the_key_the_call_went_with(conn: Connection) -> None:
    add_job(conn, "j", None)
    grant = credits.reserve(conn, asking("j", ("a",), "hunter"), 0)
    once = Settlement({"search": 1}, 1, 1, once=(("search", "a"),), key_id="k2")
    assert credits.settle(conn, grant.call_id, once) == 1
    row = conn.execute("SELECT key_id FROM credit_calls").fetchone()
    assert row[0] == "k2"
    # Hunter's free repeat is per key: the same request with another key is charged.
    again = credits.reserve(conn, asking("j", ("a",), "hunter"), 0)
    assert credits.settle(conn, again.call_id, dataclasses.replace(once, key_id="k1")) == 1
    third = credits.reserve(conn, asking("j", ("a",), "hunter"), 0)
    assert credits.settle(conn, third.call_id, once) == 0


def test_counters_kept_on_the_jobs_row_move_to_job_credits_on_upgrade() -> None:
    """A store written before 0012 kept a job's counters on its row: they carry over, so a
    job in flight during the upgrade keeps its spend and its holds."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.row_factory = sqlite3.Row
    before = next(i for i, script in enumerate(MIGRATIONS) if "job_credits" in script)
    migrate(db, MIGRATIONS[:before])
    add_job(db, "spent", 30)
    add_job(db, "idle", None)
    db.execute("UPDATE jobs SET credits = 12, credits_committed = 15 WHERE job_id = 'spent'")
    migrate(db, MIGRATIONS)
    assert (job(db, "spent")["credits"], job(db, "spent")["credits_committed"]) == (12, 15)
    assert credits.reserve(db, call("spent", 20), 0) == credits.Grant(15, "budget")
    assert (job(db, "idle")["credits"], job(db, "idle")["credits_committed"]) == (0, 0)
