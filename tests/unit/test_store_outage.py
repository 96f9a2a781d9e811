"""Store trouble is told apart from bugs, raised as `StoreUnavailable`, waited out by the
router's consumer without spending attempts, and shown by readiness."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import shared.consumer
from shared.broker import ATTEMPT_HEADER, Delayed, Outgoing
from shared.consumer import STORE_RETRY_DELAY_S, BatchConsumer
from shared.dbapi import Connection
from shared.errors import StoreUnavailable
from shared.messages import Codec, LeadsEnriched, Message, ResultLead
from shared.store import Store, unavailable
from shared.supervise import Backoff
from tests.fakebroker import FakeBroker, FakeMessage, batch_consumer
from tests.helpers import wait_until

BUSY_S = 0.2


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "db.sqlite", busy_timeout_s=BUSY_S)
    await store.open()
    yield store
    await store.close()


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holds the store's write lock (a backup, another writer)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def locked_error(path: Path) -> sqlite3.OperationalError:
    with write_lock_held(path):
        conn = sqlite3.connect(path, isolation_level=None, timeout=0.01)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            return e
        finally:
            conn.close()
    raise AssertionError("the lock was not held")


async def test_store_trouble_is_told_apart_from_bugs_and_bad_data(store: Store) -> None:
    assert isinstance(unavailable(locked_error(store.path)), StoreUnavailable)
    assert isinstance(unavailable(sqlite3.OperationalError("disk I/O error")), StoreUnavailable)
    full = sqlite3.OperationalError("database or disk is full")
    assert isinstance(unavailable(full), StoreUnavailable)

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as constraint:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError) as no_table:
        conn.execute("SELECT * FROM missing")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError) as closed:
        conn.execute("SELECT 1")
    assert unavailable(constraint.value) is None
    assert unavailable(no_table.value) is None
    assert unavailable(closed.value) is None
    assert unavailable(ValueError("nope")) is None


async def test_a_locked_store_raises_store_unavailable_then_recovers(store: Store) -> None:
    with write_lock_held(store.path):
        with pytest.raises(StoreUnavailable):
            await store.transaction(lambda c: c.execute("INSERT INTO health_probe VALUES ('x', 1)"))
        assert "locked" in (store.unavailable_reason or "")
        # A bug is still a bug, not store trouble.
        with pytest.raises(sqlite3.OperationalError):
            await store.run(lambda c: c.execute("SELECT * FROM missing"))
    await store.transaction(lambda c: c.execute("INSERT INTO health_probe VALUES ('x', 1)"))
    assert store.unavailable_reason is None
    assert store.take_outage_s() > 0
    assert store.take_outage_s() == 0  # taken once


async def test_readiness_writes_a_probe_row_and_fails_while_locked(store: Store) -> None:
    await store.check_writable("test")
    rows = await store.run(lambda c: c.execute("SELECT name FROM health_probe").fetchall())
    assert [row[0] for row in rows] == ["test"]

    with write_lock_held(store.path):
        with pytest.raises(StoreUnavailable):
            await store.check_writable("test")
        # While a probe waits on the lock, more probes answer at once with the reason
        # instead of queueing one more wait each on the store thread.
        slow = asyncio.ensure_future(store.check_writable("test"))
        await asyncio.sleep(0)
        with pytest.raises(StoreUnavailable, match="locked"):
            await asyncio.wait_for(store.check_writable("test"), BUSY_S / 4)
        with pytest.raises(StoreUnavailable):
            await slow
    await store.check_writable("test")


async def test_a_failed_commit_leaves_no_transaction_open(store: Store) -> None:
    def setup(conn: Connection) -> None:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        conn.execute("PRAGMA foreign_keys = ON")

    await store.run(setup)
    # The deferred check fails at COMMIT: the transaction must not stay open.
    with pytest.raises(sqlite3.IntegrityError):
        await store.transaction(lambda c: c.execute("INSERT INTO child VALUES (7)"))
    await store.transaction(lambda c: c.execute("INSERT INTO parent VALUES (7)"))


def event(lead_id: str) -> LeadsEnriched:
    return LeadsEnriched(job_id="j", tenant="t", leads=[ResultLead(id=lead_id)])


def consumer(broker: FakeBroker, handler: Any) -> BatchConsumer[Message]:
    return batch_consumer(broker, handler)


def consumed(c: BatchConsumer[Message], outcome: str) -> float:
    value = c.metrics.registry.get_sample_value(
        "leadflow_messages_consumed_total", {"queue": "events", "outcome": outcome}
    )
    return value or 0.0


async def test_batch_consumer_holds_a_batch_while_the_store_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shared.consumer, "STORE_BACKOFF", Backoff(base_s=0.001, max_s=0.002))
    calls: list[int] = []

    async def handler(events: list[Message]) -> Sequence[Outgoing]:
        calls.append(len(events))
        if len(calls) <= 6:  # more tries than max_attempts: none of them may count
            raise StoreUnavailable("store unavailable: database is locked")
        return ()

    broker = FakeBroker()
    c = consumer(broker, handler)
    codec = Codec()
    messages = [FakeMessage(codec.encode(event(i)), message_id=i) for i in ("a", "b")]
    await c._handle_batch(list(messages))

    assert calls == [2] * 7, "the whole batch is tried again, never split"
    assert [m.settled for m in messages] == [["ack"], ["ack"]], "acked once, never requeued"
    assert broker.published == [], "no retry tier"
    assert broker.dead == [], "no dead letter"
    assert consumed(c, "ack") == 2
    assert c.held_since is None


async def test_a_bug_in_the_store_code_still_spends_attempts() -> None:
    async def handler(events: list[Message]) -> Sequence[Outgoing]:
        raise sqlite3.OperationalError("no such column: nope")

    broker = FakeBroker()
    c = consumer(broker, handler)
    message = FakeMessage(Codec().encode(event("a")))
    await c._handle_batch([message])
    [retry] = broker.taken()
    assert isinstance(retry.item, Delayed)
    assert retry.item.attempt == 1
    assert message.settled == ["ack"]


async def test_a_task_that_meets_store_trouble_comes_back_without_spending_an_attempt() -> None:
    broker = FakeBroker()
    c = consumer(broker, None)
    message = FakeMessage(Codec().encode(event("a")), headers={ATTEMPT_HEADER: 2})
    outcome = await c.fail(message, event("a"), StoreUnavailable("disk full"))
    assert outcome == "retry"
    [published] = broker.taken()
    later = published.item
    assert isinstance(later, Delayed)
    assert later.attempt == 2
    assert later.delay_s == STORE_RETRY_DELAY_S
    assert message.settled == ["ack"]


async def test_a_service_starting_on_a_locked_new_store_waits_for_it(tmp_path: Path) -> None:
    """Services started at once on an empty database queue for it (the switch to WAL, the
    migrations); a start must wait the lock out, not exit."""
    path = tmp_path / "new.sqlite"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # a rollback-journal file: nobody may even read
    store = Store(path, busy_timeout_s=BUSY_S)
    opening = asyncio.create_task(store.open())
    try:

        async def met_the_lock() -> bool:
            return store.unavailable_reason is not None

        await wait_until(met_the_lock, interval_s=0.01, what="the first try to meet the lock")
        assert not opening.done()
        blocker.execute("ROLLBACK")
        await asyncio.wait_for(opening, 30)
        tables = await store.run(
            lambda conn: {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        )
        assert "jobs" in tables
    finally:
        blocker.close()
        opening.cancel()
        await store.close()


async def test_only_a_committed_write_ends_an_outage(store: Store) -> None:
    with write_lock_held(store.path):
        with pytest.raises(StoreUnavailable):
            await store.check_writable("test")
        # Reads go on (WAL) and do not end the outage the deadlines are moved by.
        await store.run(lambda c: c.execute("SELECT count(*) FROM jobs").fetchone())
        assert store.unavailable_reason
    await store.transaction(lambda c: c.execute("SELECT count(*) FROM jobs").fetchone())
    assert store.unavailable_reason  # a transaction that wrote nothing
    assert store.take_outage_s() == 0
    await store.check_writable("test")
    assert not store.unavailable_reason
    assert store.take_outage_s() > 0
