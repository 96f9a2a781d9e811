"""The router's periodic duties, one loop: deadlines, stalls, alerts, retention.

Each duty is a `check()` that does nothing when there is nothing to do; one failing
round (broker down, store busy) is logged and the next round tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from shared.logging import get_logger

log = get_logger(__name__)
Check = Callable[[], Awaitable[None]]


async def run_upkeep(interval_s: float, checks: Sequence[tuple[str, Check]]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        for name, check in checks:
            try:
                await check()
            except Exception:  # one duty failing must not stop the others; logged
                log.exception("upkeep.failed", duty=name)
