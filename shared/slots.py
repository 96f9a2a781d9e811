"""Who runs next: handler slots shared by tenants, served by priority.

At most `capacity` handlers run at once, at most `per_tenant` of them for one tenant.
Prefetched deliveries wait here; when a slot frees, it goes to the best waiter, high
priority first, then the one waiting longest, skipping tenants already at their limit.
So a high-priority task that arrives behind prefetched low-priority ones still starts
first, and one tenant's backlog cannot take every slot.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter

from shared.jobs import PRIORITY_LEVELS


class FairSlots:
    def __init__(self, capacity: int, per_tenant: int) -> None:
        self.capacity = capacity
        self.per_tenant = per_tenant
        self._running = 0
        self._by_tenant: Counter[str] = Counter()
        self._waiters: list[tuple[int, int, str, asyncio.Future[None]]] = []
        self._arrivals = 0

    async def acquire(self, priority: str, tenant: str) -> None:
        self._arrivals += 1
        rank = -PRIORITY_LEVELS.get(priority, PRIORITY_LEVELS["normal"])
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, self._arrivals, tenant, waiter))
        self._grant()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(tenant)  # granted and cancelled at once: hand the slot on
            raise

    def release(self, tenant: str) -> None:
        self._running -= 1
        self._by_tenant[tenant] -= 1
        self._grant()

    def _grant(self) -> None:
        skipped = []
        while self._waiters and self._running < self.capacity:
            item = heapq.heappop(self._waiters)
            _, _, tenant, waiter = item
            if waiter.done():
                continue  # cancelled while waiting
            if self._by_tenant[tenant] >= self.per_tenant:
                skipped.append(item)
                continue
            self._running += 1
            self._by_tenant[tenant] += 1
            waiter.set_result(None)
        for item in skipped:
            heapq.heappush(self._waiters, item)
