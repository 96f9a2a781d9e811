"""When saved searches run: next slots (every_s, cron), a missed series run once, one run
per slot however many schedulers claim it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.router.schedules import Due, SlotTaken, claim, due_schedules
from shared.dbapi import Connection
from shared.schedules import cron_problem, next_run_after
from shared.store import MIGRATIONS, connect

CREATED = 1_000_000.0


def test_every_s_slots_are_aligned_on_creation() -> None:
    assert next_run_after(CREATED, created_at=CREATED, every_s=60, cron=None) == CREATED + 60
    assert next_run_after(CREATED + 59.9, created_at=CREATED, every_s=60, cron=None) == CREATED + 60
    assert next_run_after(CREATED + 60, created_at=CREATED, every_s=60, cron=None) == CREATED + 120


def test_after_downtime_the_next_slot_is_after_now_not_each_missed_one() -> None:
    # Down for 10 slots and a half: the run now is the only one; the next is the next slot.
    now = CREATED + 10.5 * 60
    assert next_run_after(now, created_at=CREATED, every_s=60, cron=None) == CREATED + 11 * 60


def test_cron_slots_are_the_expression_s_times_in_utc() -> None:
    thursday_7am = datetime(2026, 12, 3, 7, 0, tzinfo=UTC).timestamp()
    nxt = next_run_after(thursday_7am, created_at=0, every_s=None, cron="0 6 * * 1-5")
    assert datetime.fromtimestamp(nxt, UTC) == datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    friday_8am = datetime(2026, 12, 4, 8, 0, tzinfo=UTC).timestamp()  # missed Friday 6:00
    nxt = next_run_after(friday_8am, created_at=0, every_s=None, cron="0 6 * * 1-5")
    assert datetime.fromtimestamp(nxt, UTC) == datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "fine"),
    [
        ("0 6 * * 1-5", True),
        ("*/15 8-18 * * *", True),
        ("0,30 9 1,15 * 0", True),
        ("0 6 * * MON", False),  # names are not taken (the document's pattern has numbers)
        ("60 * * * *", False),
        ("0 6 * *", False),
        ("0 0 31 2 *", False),  # never comes
    ],
)
def test_cron_expressions(expression: str, fine: bool) -> None:
    assert (cron_problem(expression) is None) == fine


@pytest.fixture
def conn(tmp_path: Path) -> Connection:
    conn = connect(tmp_path / "store.db", MIGRATIONS)
    conn.execute(
        "INSERT INTO schedules (schedule_id, tenant, every_s, cron, only_new, job,"
        " sealed_secrets, created_at, next_run_at) VALUES ('s1', 't', 60, NULL, 0, ?, ?, ?, ?)",
        (b"{}", b"{}", CREATED, CREATED),
    )
    return conn


def test_a_slot_is_claimed_once(conn: Connection) -> None:
    # Two schedulers read the same due slot; the first claim wins, the second changes nothing.
    first, second = due_schedules(conn, CREATED + 1), due_schedules(conn, CREATED + 2)
    claim(conn, first[0], "job_a", None)
    with pytest.raises(SlotTaken):
        claim(conn, second[0], "job_b", None)
    runs = conn.execute("SELECT job_id FROM schedule_runs").fetchall()
    assert [r[0] for r in runs] == ["job_a"]
    assert due_schedules(conn, CREATED + 59) == []
    assert [d.slot_at for d in due_schedules(conn, CREATED + 60)] == [CREATED + 60]


def test_a_missed_series_is_one_due_run(conn: Connection) -> None:
    due = due_schedules(conn, CREATED + 10.5 * 60)
    assert len(due) == 1
    assert due[0].next_at == CREATED + 11 * 60
    claim(conn, due[0], "job_a", None)
    assert due_schedules(conn, CREATED + 10.9 * 60) == []


def test_a_deleted_schedule_is_not_claimed(conn: Connection) -> None:
    due: Due = due_schedules(conn, CREATED)[0]
    conn.execute("DELETE FROM schedules")
    with pytest.raises(SlotTaken):
        claim(conn, due, "job_a", None)
