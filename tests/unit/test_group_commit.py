"""Group-committed transactions on a real SQLite store: concurrent callers share commits,
each gets its own function's result, and a group that fails fails only its own callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from services.enricher.groupcommit import GroupCommitStore
from shared.dbapi import Connection


@pytest.fixture
async def grouped(tmp_path: Path) -> AsyncIterator[GroupCommitStore]:
    store = GroupCommitStore(tmp_path / "db.sqlite")
    await store.open()
    await store.run(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY)"))
    yield store
    await store.close()


def insert(n: int) -> Callable[[Connection], int]:
    def write(conn: Connection) -> int:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n * 10

    return write


def count(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


async def test_concurrent_transactions_share_a_commit_and_get_their_own_results(
    grouped: GroupCommitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    store_call = grouped._call  # every transaction of the store thread passes here

    def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return store_call(*args)

    monkeypatch.setattr(grouped, "_call", counted)
    results = await asyncio.gather(*(grouped.transaction(insert(n)) for n in range(20)))
    assert results == [n * 10 for n in range(20)]
    assert calls == 1, "twenty transactions asked at once are one commit"
    assert await grouped.run(count) == 20


async def test_a_failing_group_fails_its_callers_and_the_next_group_goes_on(
    grouped: GroupCommitStore,
) -> None:
    assert await grouped.transaction(insert(1)) == 10
    # Asked at once, so written together.
    duplicate = asyncio.ensure_future(grouped.transaction(insert(1)))
    innocent = asyncio.ensure_future(grouped.transaction(insert(2)))
    with pytest.raises(Exception, match="UNIQUE"):
        await duplicate
    with pytest.raises(Exception, match="UNIQUE"):
        await innocent  # rolled back with its group
    assert await grouped.transaction(insert(3)) == 30
    assert await grouped.run(count) == 2


async def test_a_caller_that_gave_up_before_its_group_started_is_not_written(
    grouped: GroupCommitStore,
) -> None:
    release = threading.Event()

    def held(conn: Connection) -> int:
        release.wait(10)  # the store thread is busy with this group until released
        return insert(1)(conn)

    first = asyncio.ensure_future(grouped.transaction(held))
    await asyncio.sleep(0)  # the first group is written
    gave_up = asyncio.ensure_future(grouped.transaction(insert(2)))
    await asyncio.sleep(0)  # queued behind it
    gave_up.cancel()
    release.set()
    assert await first == 10
    assert await grouped.transaction(insert(3)) == 30
    assert gave_up.cancelled()
    assert await grouped.run(count) == 2
