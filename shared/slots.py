"""Who runs next: handler slots shared by tenants, served by priority.

At most `capacity` handlers run at once, at most `per_tenant` of them for one tenant.
Prefetched deliveries wait here; when a slot frees, it goes to the best waiter, high
priority first, then the one waiting longest, skipping tenants already at their limit.
So a high-priority task that arrives behind prefetched low-priority ones still starts
first, and one tenant's backlog cannot take every slot.

With a lane per priority level (shared/topology.py) a worker holds prefetched tasks of
every level at once, so a steady flow of high tasks could keep a prefetched low one
waiting here, unacked, until the broker's `consumer_timeout` (30 min) closes the channel
and its redelivery is mistaken for a crash. A waiter older than `MAX_WAIT_S` therefore
goes first, whatever its priority: priorities order the start of work, they never starve it.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter, deque
from collections.abc import Callable

from shared.jobs import PRIORITY_LEVELS

# Far below the broker's 30-minute consumer_timeout, far above a task's time.
MAX_WAIT_S = 300.0

_Waiter = tuple[int, int, str, asyncio.Future[None]]


class FairSlots:
    def __init__(
        self,
        capacity: int,
        per_tenant: int,
        *,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.per_tenant = per_tenant
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._running = 0
        self._by_tenant: Counter[str] = Counter()
        self._waiters: list[_Waiter] = []
        # The same waiters in arrival order, with their arrival time, to find the overdue.
        self._by_arrival: deque[tuple[float, _Waiter]] = deque()
        self._arrivals = 0

    async def acquire(self, priority: str, tenant: str) -> None:
        self._arrivals += 1
        rank = -PRIORITY_LEVELS.get(priority, PRIORITY_LEVELS["normal"])
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = (rank, self._arrivals, tenant, waiter)
        heapq.heappush(self._waiters, item)
        self._by_arrival.append((self._clock(), item))
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
        while self._running < self.capacity:
            item = self._overdue() or self._best()
            if item is None:
                return
            _, _, tenant, waiter = item
            self._running += 1
            self._by_tenant[tenant] += 1
            waiter.set_result(None)

    def _overdue(self) -> _Waiter | None:
        """The longest-waiting waiter past `max_wait_s` whose tenant may run one more."""
        while self._by_arrival and self._by_arrival[0][1][3].done():
            self._by_arrival.popleft()  # granted or cancelled meanwhile
        if len(self._by_arrival) > 2 * len(self._waiters) + 64:
            # Granted ones behind a long waiter: dropped now and then, so this stays small.
            self._by_arrival = deque(e for e in self._by_arrival if not e[1][3].done())
        deadline = self._clock() - self.max_wait_s
        for index, (arrived, item) in enumerate(self._by_arrival):
            if arrived > deadline:
                return None
            if not item[3].done() and self._by_tenant[item[2]] < self.per_tenant:
                del self._by_arrival[index]
                return item  # its heap entry is skipped once its future is done
        return None

    def _best(self) -> _Waiter | None:
        """The highest-priority, then longest-waiting, waiter whose tenant may run one more."""
        skipped = []
        found = None
        while self._waiters:
            item = heapq.heappop(self._waiters)
            if item[3].done():
                continue  # cancelled while waiting, or granted as overdue
            if self._by_tenant[item[2]] >= self.per_tenant:
                skipped.append(item)
                continue
            found = item
            break
        for item in skipped:
            heapq.heappush(self._waiters, item)
        return found
