"""Supervised background tasks: every long-running loop of a service runs under `supervise`.

An error escaping the loop is logged with its traceback and the loop is started again
after a backoff, so one store error or broker hiccup cannot end a dispatcher for good.
A task that ends anyway (cancelled by someone else, or a `BaseException`) is logged at
once, and its readiness check fails from then on, so `/readyz` shows it instead of a
service that looks healthy and does nothing.

`once=True` is for start-up work (subscribe, catch up): it is retried the same way until
it returns, and is not ready before then.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from shared.logging import get_logger

log = get_logger(__name__)
# A loop that ran this long before failing was healthy: its backoff starts over.
HEALTHY_AFTER_S = 60.0


def compute_backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter for the `attempt`-th retry (1-based): the one
    formula behind every wait in leadflow (task retry tiers, webhook retries, restarts)."""
    ceiling = min(max_s, base_s * 2 ** (max(attempt, 1) - 1))
    return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Backoff:
    base_s: float = 1.0
    max_s: float = 30.0

    def delay_s(self, attempt: int) -> float:
        return compute_backoff(attempt, self.base_s, self.max_s)


class Supervised:
    """One supervised task: `task` runs the loop; `readiness` says whether it is working."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Coroutine[Any, Any, object]],
        backoff: Backoff,
        *,
        once: bool,
    ) -> None:
        self.name = name
        self.factory = factory
        self.backoff = backoff
        self.once = once
        self.done = False  # a `once` task that finished its work
        self.failing: str | None = None  # the last error, while waiting to start again
        self.died: str | None = None
        self._stopping = False
        self.task = asyncio.create_task(self._run(), name=name)
        self.task.add_done_callback(self._ended)

    async def readiness(self) -> str | None:
        if self.died is not None:
            return f"{self.name} died: {self.died}"
        if self.failing is not None:
            return f"{self.name} failing, restarting: {self.failing}"
        if self.once and not self.done:
            return f"{self.name} not done yet"
        return None

    async def stop(self) -> None:
        """Cancel the task and wait for it (at shutdown)."""
        self._stopping = True
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self.factory()
            except Exception as e:  # logged here; the loop starts again after a backoff
                self.failing = f"{type(e).__name__}: {e}"
                log.exception("task.failed_restarting", task=self.name)
            else:
                if self.once:
                    self.done = True
                    self.failing = None
                    return
                self.failing = "returned"
                log.error("task.returned_restarting", task=self.name)
            failures = 1 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
            await asyncio.sleep(self.backoff.delay_s(failures))
            self.failing = None  # running again

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping or (self.once and self.done):
            return
        error = "cancelled" if task.cancelled() else repr(task.exception())
        self.died = error
        log.error("task.died", task=self.name, error=error)


def supervise(
    name: str,
    factory: Callable[[], Coroutine[Any, Any, object]],
    backoff: Backoff | None = None,
    *,
    once: bool = False,
) -> Supervised:
    """Run `factory()` as a supervised task (see the module docstring)."""
    return Supervised(name, factory, backoff or Backoff(), once=once)


async def stop_all(tasks: list[Supervised]) -> None:
    await asyncio.gather(*(each.stop() for each in tasks))
