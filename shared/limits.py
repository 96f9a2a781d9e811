"""An account's allowance: request windows (`15/s,500/min`, `50/min,200/h,600/d`) and how
many requests may be in flight, kept per process or shared by every process through the
store.

A window allows `limit` requests in any `span_s` (a sliding window, the strictest way a
vendor counts: whoever counts by fixed minutes or calendar days sees no more than that
either). It is kept as `limit` slots holding the times of the latest requests: the next
request may go when the oldest slot is `span_s` old, and booking it writes its time into
that slot. A turn may be booked ahead (the slot holds a future time) when it is close; a
turn further away books nothing and says how far it is, so the caller hands its work back
to the broker instead of holding it.

`MemoryLimits` keeps the slots in the process: right for one process, and the per-process
fallback. `StoreLimits` keeps them in the store's `limit_slots` table (migration 0010), one
transaction per turn taken, so enrichers and scrapers on any number of processes and
machines share an account's allowance; `limit_leases` does the same for concurrency (a
lease per request in flight, which expires if its holder dies).

The vendor counts a request when it arrives, and a request booked for t may leave later
(a sleep overslept, a busy event loop). So the caller reports when it really sent
(`sent`): a late request moves its slot to that time, before the slot is booked again (a
turn is booked at most `BOOK_AHEAD_S` ahead; a caller further away sleeps, then books).
What remains (the network, the vendor's own lag) is covered by lengthening each span by
`Window.margin_s` when booking.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from shared.errors import StoreUnavailable
from shared.logging import get_logger
from shared.windows import Window

log = get_logger(__name__)

# How far ahead a turn is booked: a slot is booked again only after the request that used it
# had this long less than its span to report when it really left.
BOOK_AHEAD_S = 0.25
# A request that left this much later than booked moves its slot (fewer writes for the rest).
SETTLE_AFTER_S = 0.002
# Turns of the shortest window are at least this share of an even spacing apart.
PACE = 0.5
NEVER = -1e12  # a slot not used yet: longer ago than any span


class Turn(msgspec.Struct, frozen=True):
    """A booked turn: `wait_s` until it (when it was booked), the time it was booked for
    (the limits' clock) and the slots holding it, as (window name, slot)."""

    wait_s: float
    at: float = 0.0
    slots: tuple[tuple[str, int], ...] = ()

    @property
    def booked(self) -> bool:
        return bool(self.slots)


class Limits(Protocol):
    """Where turns and leases are booked: in the process, or in the store for all of them."""

    async def take(self, target: str, windows: Sequence[Window], max_wait_s: float) -> Turn:
        """Book `target`'s next turn under every window: its wait (0: now). A turn more
        than `max_wait_s` away is not booked (no slots); its distance is the wait."""

    async def sent(self, target: str, turn: Turn) -> None:
        """The request of `turn` leaves now: a slot booked earlier moves to now."""

    async def lease(self, target: str, slots: int, hold_s: float) -> str | None:
        """One of `target`'s `slots` concurrent requests, for at most `hold_s`: its lease id,
        or None when all are taken."""

    async def release(self, target: str, lease: str) -> None:
        """Give the lease back."""


def _book(slots_at: list[float], windows: Sequence[Window], now: float, newest: float) -> float:
    """When the next turn is, given each window's oldest slot time (in `windows` order,
    shortest span first) and the latest turn booked in the shortest window.

    Turns are also kept `PACE` of an even spacing apart in the shortest window: a whole
    window's worth sent at one instant reaches the vendor as a burst it counts over some
    milliseconds, and the same burst a span later would then meet the tail of the first."""
    shortest = windows[0]
    start = max(now, newest + PACE * shortest.span_s / shortest.limit)
    for oldest, window in zip(slots_at, windows, strict=True):
        start = max(start, oldest + window.span_s + window.margin_s())
    return start


class MemoryLimits:
    """The slots of one process (the per-process fallback, and unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slots: dict[tuple[str, str], list[float]] = {}
        self._leases: dict[str, set[str]] = {}

    async def take(self, target: str, windows: Sequence[Window], max_wait_s: float) -> Turn:
        if not windows:
            return Turn(0.0)
        heaps = [self._slots.setdefault((target, w.name), [-math.inf] * w.limit) for w in windows]
        now = self._clock()
        start = _book([heap[0] for heap in heaps], windows, now, max(heaps[0]))
        if start - now > max_wait_s:
            return Turn(start - now)
        for heap in heaps:
            heapq.heapreplace(heap, start)
        return Turn(start - now, start, tuple((w.name, 0) for w in windows))

    async def sent(self, target: str, turn: Turn) -> None:
        now = self._clock()
        if not turn.booked or now - turn.at < SETTLE_AFTER_S:
            return
        for name, _ in turn.slots:
            heap = self._slots.get((target, name))
            if heap is not None and turn.at in heap:
                heap[heap.index(turn.at)] = now
                heapq.heapify(heap)

    async def lease(self, target: str, slots: int, hold_s: float) -> str | None:
        held = self._leases.setdefault(target, set())
        if len(held) >= slots:
            return None
        lease = uuid.uuid4().hex
        held.add(lease)
        return lease

    async def release(self, target: str, lease: str) -> None:
        self._leases.get(target, set()).discard(lease)


class LimitsStore(Protocol):
    """What `StoreLimits` needs of shared/store.py's `Store`."""

    async def transaction(self, fn: Callable[[Any], Any]) -> Any: ...


class Conflict(Exception):
    """Another process booked the slot between our read and our write: read again."""


class StoreLimits:
    """The slots in the store, shared by every process that uses it.

    Each turn is one transaction: read each window's oldest slot, and write the turn's time
    into it only if it still holds what was read (on PostgreSQL two transactions may read
    the same slot; the second write then matches no row, and that turn is read again). The
    time is read inside the transaction, after the write lock is held (SQLite), so a turn
    that waited for the lock is booked when it really goes.
    """

    MAX_CONFLICTS = 20

    def __init__(self, store: LimitsStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._seeded: set[tuple[str, str]] = set()
        self.holder = uuid.uuid4().hex[:12]  # this process, in lease rows

    async def take(self, target: str, windows: Sequence[Window], max_wait_s: float) -> Turn:
        if not windows:
            return Turn(0.0)
        await self._seed(target, windows)
        for _ in range(self.MAX_CONFLICTS):
            try:
                turn: Turn = await self._store.transaction(
                    lambda conn: self._take(conn, target, windows, max_wait_s)
                )
                return turn
            except Conflict:
                await asyncio.sleep(0)
        return Turn(max_wait_s + 0.01)  # contended beyond reason: come back later

    async def sent(self, target: str, turn: Turn) -> None:
        if not turn.booked or self._clock() - turn.at < SETTLE_AFTER_S:
            return

        def settle(conn: Any) -> None:
            now = self._clock()
            conn.executemany(
                "UPDATE limit_slots SET at = ? WHERE target = ? AND win = ? AND slot = ?"
                " AND at = ?",
                [(now, target, name, slot, turn.at) for name, slot in turn.slots],
            )

        try:
            await self._store.transaction(settle)
        except StoreUnavailable as e:
            # The margin still covers most of the lag; the request itself is not at fault.
            log.warning("limits.settle_failed", target=target, error=str(e))

    def _take(self, conn: Any, target: str, windows: Sequence[Window], max_wait_s: float) -> Turn:
        oldest = []
        for window in windows:
            row = conn.execute(
                "SELECT slot, at FROM limit_slots WHERE target = ? AND win = ? ORDER BY at LIMIT 1",
                (target, window.name),
            ).fetchone()
            oldest.append((int(row[0]), float(row[1])))
        newest = conn.execute(
            "SELECT MAX(at) FROM limit_slots WHERE target = ? AND win = ?",
            (target, windows[0].name),
        ).fetchone()[0]
        now = self._clock()
        start = _book([at for _, at in oldest], windows, now, float(newest))
        if start - now > max_wait_s:
            return Turn(start - now)
        for window, (slot, at) in zip(windows, oldest, strict=True):
            booked = conn.execute(
                "UPDATE limit_slots SET at = ? WHERE target = ? AND win = ? AND slot = ?"
                " AND at = ?",
                (start, target, window.name, slot, at),
            ).rowcount
            if booked != 1:
                raise Conflict
        return Turn(
            start - now,
            start,
            tuple((w.name, slot) for w, (slot, _) in zip(windows, oldest, strict=True)),
        )

    async def _seed(self, target: str, windows: Sequence[Window]) -> None:
        missing = [w for w in windows if (target, w.name) not in self._seeded]
        if not missing:
            return

        def seed(conn: Any) -> None:
            for window in missing:
                conn.executemany(
                    "INSERT INTO limit_slots (target, win, slot, at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (target, win, slot) DO NOTHING",
                    [(target, window.name, slot, NEVER) for slot in range(window.limit)],
                )

        await self._store.transaction(seed)
        self._seeded.update((target, w.name) for w in missing)

    async def lease(self, target: str, slots: int, hold_s: float) -> str | None:
        if (target, f"lease:{slots}") not in self._seeded:

            def seed(conn: Any) -> None:
                conn.executemany(
                    "INSERT INTO limit_leases (target, slot, holder, expires_at)"
                    " VALUES (?, ?, '', 0) ON CONFLICT (target, slot) DO NOTHING",
                    [(target, slot) for slot in range(slots)],
                )

            await self._store.transaction(seed)
            self._seeded.add((target, f"lease:{slots}"))

        def take_lease(conn: Any) -> str | None:
            now = self._clock()
            row = conn.execute(
                "SELECT slot FROM limit_leases WHERE target = ? AND slot < ? AND expires_at <= ?"
                " ORDER BY slot LIMIT 1",
                (target, slots, now),
            ).fetchone()
            if row is None:
                return None
            lease = f"{self.holder}:{uuid.uuid4().hex[:8]}"
            taken = conn.execute(
                "UPDATE limit_leases SET holder = ?, expires_at = ?"
                " WHERE target = ? AND slot = ? AND expires_at <= ?",
                (lease, now + hold_s, target, int(row[0]), now),
            ).rowcount
            if taken != 1:
                raise Conflict
            return lease

        for _ in range(self.MAX_CONFLICTS):
            try:
                lease: str | None = await self._store.transaction(take_lease)
                return lease
            except Conflict:
                await asyncio.sleep(0)
        return None

    async def release(self, target: str, lease: str) -> None:
        await self._store.transaction(
            lambda conn: conn.execute(
                "UPDATE limit_leases SET holder = '', expires_at = 0"
                " WHERE target = ? AND holder = ?",
                (target, lease),
            )
        )
