"""Job deadlines: a job past its deadline times out, but time the store could not be
written does not count against it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.router.timeouts import DeadlineKeeper
from shared.broker import Outgoing
from shared.dbapi import Connection
from shared.messages import JobStopped
from shared.store import Store, epoch_s


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[Outgoing] = []

    async def publish(self, outgoing: Sequence[Outgoing], **_: Any) -> None:
        self.published.extend(outgoing)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "db.sqlite", busy_timeout_s=0.1)
    await store.open()
    yield store
    await store.close()


def add_running_job(conn: Connection, job_id: str, deadline_at: float) -> None:
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, spec,"
        " timeout_s, deadline_at) VALUES (?, 't', 'enrich', 'running', 'normal', 5, 'now',"
        " x'7b7d', 60, ?)",
        (job_id, deadline_at),
    )


async def job_state(store: Store, job_id: str) -> str:
    row = await store.run(
        lambda c: c.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    )
    return str(row[0])


async def test_a_job_past_its_deadline_times_out(store: Store) -> None:
    await store.transaction(lambda c: add_running_job(c, "late", epoch_s() - 1))
    broker = FakeBroker()
    await DeadlineKeeper(store, broker).check()  # type: ignore[arg-type]
    assert [type(o.message) for o in broker.published] == [JobStopped]
    assert await job_state(store, "late") == "timed_out"


async def test_a_store_outage_moves_deadlines_instead_of_timing_jobs_out(store: Store) -> None:
    await store.transaction(lambda c: add_running_job(c, "held", epoch_s() + 5))
    broker = FakeBroker()
    keeper = DeadlineKeeper(store, broker)  # type: ignore[arg-type]
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Exception, match="locked"):
            await store.transaction(lambda c: c.execute("DELETE FROM health_probe"))
        await keeper.check()  # the store is known to be down: no stop is broadcast
        # The outage outlasts the deadline (60 s more than it in the store's books).
        store._down_since = epoch_s() - 65
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Back: a write is committed (a read, or a write that changed nothing, would not do).
    await store.transaction(lambda c: c.execute("INSERT INTO health_probe VALUES ('x', 1)"))
    await keeper.check()
    assert broker.published == []
    assert await job_state(store, "held") == "running"
    deadline = await store.run(
        lambda c: c.execute("SELECT deadline_at FROM jobs WHERE job_id = 'held'").fetchone()[0]
    )
    assert deadline > epoch_s() + 60
