"""A store whose write transactions are group-committed.

The enricher's writes are many small transactions from concurrent tasks (each paid call's
reservation and settlement in the ledger, each provider's answers in the cache). A
transaction's fixed cost, the lock, the commit and on the durable ledger its fsync, is
most of what a small one costs: so the transactions asked for while one is being written
wait and go together in the next one, each function run in turn on the same connection,
and each caller gets its own function's result once that transaction has committed (as
durable as alone, and as soon or sooner when the store is busy).

What a group shares: its commit, and so its failure. A store error (the file locked, the
database gone) reaches every caller of the group, as it would have reached each alone; a
function raising anything else rolls back its whole group too, so the functions given are
the store's usual ones, which raise nothing but store errors. On PostgreSQL a group may
run more than once, like any transaction (shared/store.py `Store.transaction`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from shared.dbapi import Connection
from shared.store import Store

T = TypeVar("T")
Waiting = tuple[Callable[[Connection], Any], "asyncio.Future[Any]"]


class GroupCommitStore(Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: list[Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((fn, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        return await done

    async def _write_groups(self) -> None:
        while self._waiting:
            # A caller that gave up before its group started (cancelled) is not written,
            # as a job still queued for the store thread is dropped when cancelled.
            group = [(fn, done) for fn, done in self._waiting if not done.cancelled()]
            self._waiting = []
            if not group:
                continue
            try:
                results = await super().transaction(partial(run_all, [fn for fn, _ in group]))
            except asyncio.CancelledError:
                for _, done in group:
                    done.cancel()
                raise
            except Exception as e:
                for _, done in group:
                    if not done.done():
                        done.set_exception(e)
            else:
                for (_, done), result in zip(group, results, strict=True):
                    if not done.done():
                        done.set_result(result)

    async def close(self) -> None:
        if self._writer is not None:  # the transactions asked for are written first
            await asyncio.gather(self._writer, return_exceptions=True)
        await super().close()


def run_all(fns: list[Callable[[Connection], Any]], conn: Connection) -> list[Any]:
    return [fn(conn) for fn in fns]
