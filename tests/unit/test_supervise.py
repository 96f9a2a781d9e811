"""Supervised background tasks: a failing loop is restarted, a dead one fails readiness,
and a dispatcher-like loop that meets store trouble keeps running."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from shared.dbapi import Connection
from shared.errors import StoreUnavailable
from shared.store import Store
from shared.supervise import Backoff, supervise
from tests.helpers import wait_until

FAST = Backoff(base_s=0.01, max_s=0.02)


async def test_a_failing_loop_is_logged_and_restarted() -> None:
    runs = 0
    running = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RuntimeError(f"boom {runs}")
        running.set()
        await asyncio.Event().wait()  # a loop that runs until cancelled

    task = supervise("loop", loop, FAST)
    await asyncio.wait_for(running.wait(), 5)
    assert runs == 4
    assert await task.readiness() is None
    await task.stop()
    assert await task.readiness() is None, "stopped on purpose is not a death"


async def test_a_dead_task_fails_readiness() -> None:
    class Fatal(BaseException):
        pass

    async def loop() -> None:
        raise Fatal("cannot go on")

    task = supervise("doomed", loop, FAST)
    await asyncio.gather(task.task, return_exceptions=True)
    reason = await task.readiness()
    assert reason is not None
    assert "doomed died" in reason
    assert "cannot go on" in reason

    async def forever() -> None:
        await asyncio.Event().wait()

    other = supervise("killed", forever, FAST)
    await asyncio.sleep(0)
    other.task.cancel()  # cancelled by someone else than its `stop`
    await asyncio.gather(other.task, return_exceptions=True)
    assert await other.readiness() == "killed died: cancelled"


async def test_start_up_work_is_retried_until_done_and_not_ready_before() -> None:
    tries = 0
    gate = asyncio.Event()

    async def start() -> None:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionError("broker hiccup")
        await gate.wait()

    task = supervise("consume", start, FAST, once=True)
    await wait_until(lambda: _is(tries >= 3), timeout_s=5, what="third try")
    assert await task.readiness() == "consume not done yet"
    gate.set()
    await asyncio.wait_for(task.task, 5)
    assert await task.readiness() is None


async def _is(value: bool) -> bool:
    return value


async def test_a_dispatcher_loop_that_meets_a_store_error_keeps_running(tmp_path: Path) -> None:
    """Like the webhook dispatcher: claim in a transaction, deliver, repeat. A store
    error in the claim escapes the loop; supervised, the loop starts again and carries
    on once the store is back, and readiness shows it meanwhile."""
    store = Store(tmp_path / "db.sqlite", busy_timeout_s=0.05)
    await store.open()
    await store.run(lambda c: c.execute("CREATE TABLE due (id INTEGER PRIMARY KEY)"))
    delivered: list[int] = []
    failures: list[str] = []

    def claim(conn: Connection) -> list[int]:
        ids = [row[0] for row in conn.execute("SELECT id FROM due ORDER BY id")]
        conn.execute("DELETE FROM due")
        return ids

    async def dispatch() -> None:
        while True:
            try:
                delivered.extend(await store.transaction(claim))
            except StoreUnavailable as e:
                failures.append(str(e))
                raise
            await asyncio.sleep(0.01)

    task = supervise("webhooks", dispatch, FAST)
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO due VALUES (1)")
        await wait_until(lambda: _is(len(failures) >= 2), timeout_s=10, what="failed claims")
        failing = await task.readiness()
        assert failing is None or "webhooks failing" in failing
        other.execute("COMMIT")  # the store is back, with a batch due
        await wait_until(lambda: _is(delivered == [1]), timeout_s=10, what="the batch delivered")
        assert not task.task.done()
        assert await task.readiness() is None
    finally:
        other.close()
        await task.stop()
        await store.close()


@pytest.mark.parametrize("attempt", [1, 2, 10])
def test_backoff_stays_within_its_bounds(attempt: int) -> None:
    delay = Backoff(base_s=1.0, max_s=4.0).delay_s(attempt)
    ceiling = min(4.0, 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling
