"""The router's retention duty on a real store: dead letters purged by age and when their
job is gone, and expired jobs announced (`JobDeleted`) before their rows go."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from services.router.retention import RetentionKeeper
from shared.broker import Outgoing
from shared.dbapi import Connection
from shared.errors import BrokerUnavailable
from shared.messages import JobDeleted
from shared.store import Store, epoch_s, iso

T = TypeVar("T")
DAY_S = 86400.0


class FakeBroker:
    """Records what retention publishes; can be told it is down."""

    def __init__(self) -> None:
        self.published: list[object] = []
        self.down = False

    async def publish(self, outgoing: Sequence[Outgoing], *, timeout_s: float = 30.0) -> None:
        if self.down:
            raise BrokerUnavailable("broker not connected")
        self.published.extend(item.message for item in outgoing)


def days_ago(days: float) -> str:
    at = iso(epoch_s() - days * DAY_S)
    assert at is not None
    return at


async def add_job(store: Store, job_id: str, finished_days_ago: float | None) -> None:
    def insert(conn: Connection) -> None:
        finished = None if finished_days_ago is None else days_ago(finished_days_ago)
        conn.execute(
            "INSERT INTO jobs (job_id, tenant, kind, state, priority, created_at, finished_at,"
            " spec) VALUES (?, 'acme', 'enrich', ?, 'normal', ?, ?, x'7b7d')",
            (job_id, "running" if finished is None else "completed", days_ago(40), finished),
        )

    await store.transaction(insert)


async def add_dead_letter(
    store: Store, name: str, job_id: str | None, died_days_ago: float, state: str = "parked"
) -> None:
    def insert(conn: Connection) -> None:
        conn.execute(
            "INSERT INTO dead_letters (message_id, queue, tenant, job_id, lead_ids, attempts,"
            " history, body, dead_at, state) VALUES (?, 'q', 'acme', ?, x'5b5d', 5, x'5b5d',"
            " x'7b7d', ?, ?)",
            (name, job_id, days_ago(died_days_ago), state),
        )

    await store.transaction(insert)


async def dead_letters(store: Store) -> set[str]:
    rows = await store.run(lambda c: c.execute("SELECT message_id FROM dead_letters").fetchall())
    return {row[0] for row in rows}


async def jobs(store: Store) -> set[str]:
    rows = await store.run(lambda c: c.execute("SELECT job_id FROM jobs").fetchall())
    return {row[0] for row in rows}


def keeper(
    store: Store, broker: FakeBroker, *, days: float, dead_letter_days: float
) -> RetentionKeeper:
    return RetentionKeeper(
        store, broker, Path("/nonexistent"), days, False, dead_letter_days=dead_letter_days
    )


async def test_dead_letters_are_purged_by_age_and_with_their_job(store: Store) -> None:
    await add_job(store, "live", finished_days_ago=None)
    await add_dead_letter(store, "fresh-parked", "live", died_days_ago=1)
    await add_dead_letter(store, "old-parked", "live", died_days_ago=20)
    await add_dead_letter(store, "old-replayed", "live", died_days_ago=20, state="replayed")
    await add_dead_letter(store, "old-no-job", None, died_days_ago=20)
    await add_dead_letter(store, "fresh-no-job", None, died_days_ago=1)
    await add_dead_letter(store, "job-deleted", "gone", died_days_ago=1, state="replayed")

    await keeper(store, FakeBroker(), days=0, dead_letter_days=14).check()

    # A replayed one stays with its job (retention deletes both in their time).
    assert await dead_letters(store) == {"fresh-parked", "old-replayed", "fresh-no-job"}


async def test_dead_letters_are_purged_in_chunks(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(1203):
        await add_dead_letter(store, f"old-{i}", None, died_days_ago=20)
    await add_dead_letter(store, "fresh", None, died_days_ago=1)
    transactions = 0
    transaction = store.transaction

    async def counting(fn: Callable[[Connection], T]) -> T:
        nonlocal transactions
        transactions += 1
        return await transaction(fn)

    monkeypatch.setattr(store, "transaction", counting)
    await keeper(store, FakeBroker(), days=0, dead_letter_days=14).check()

    assert await dead_letters(store) == {"fresh"}
    assert transactions == 4  # 500 + 500 + 203, then one that finds none


async def test_no_dead_letter_retention_keeps_them(store: Store) -> None:
    await add_dead_letter(store, "old-no-job", None, died_days_ago=400)
    await keeper(store, FakeBroker(), days=0, dead_letter_days=0).check()
    assert await dead_letters(store) == {"old-no-job"}


async def test_expired_jobs_are_announced_before_they_are_deleted(store: Store) -> None:
    await add_job(store, "old", finished_days_ago=31)
    await add_job(store, "recent", finished_days_ago=1)
    await add_job(store, "running", finished_days_ago=None)
    broker = FakeBroker()
    broker.down = True
    retention = keeper(store, broker, days=30, dead_letter_days=0)

    with pytest.raises(BrokerUnavailable):
        await retention.check()
    assert await jobs(store) == {"old", "recent", "running"}  # nothing deleted unannounced

    broker.down = False
    await retention.check()  # at once: a failed round is not counted as done
    assert broker.published == [JobDeleted(job_id="old", tenant="acme")]
    assert await jobs(store) == {"recent", "running"}
