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

Every span is lengthened by `margin_s` when booking: the vendor counts a request when it
arrives, and a request booked at t may leave (event loop lag) and arrive (network) later
than the next one booked at t + span.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from shared.errors import ConfigError

UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_WINDOW = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?")
MAX_WINDOW_LIMIT = 100_000  # slots kept per window and key: a larger allowance is no limit
EXPECTED = "comma-separated windows such as 15/s,500/min or 50/min,200/h,600/d"


class Window(msgspec.Struct, frozen=True):
    """At most `limit` requests in any `span_s` seconds."""

    limit: int
    span_s: float

    @property
    def name(self) -> str:
        """How the window is keyed in the store: a changed allowance starts afresh."""
        return f"{self.limit}/{self.span_s:g}s"

    def margin_s(self) -> float:
        # A few hundredths of a second for a 1 s window: what a request's arrival may lag
        # behind its booking on a busy machine. Longer windows take the same absolute slack.
        return 0.02 * min(self.span_s, 1.0) + 0.01


def parse_windows(variable: str, raw: str) -> tuple[Window, ...]:
    """`15/s,500/min` as windows; anything else is a `ConfigError` naming `variable`."""
    windows = []
    for part in (p.strip().lower() for p in raw.split(",")):
        match = _WINDOW.fullmatch(part)
        unit = UNITS.get(match[3]) if match else None
        if match is None or unit is None:
            raise ConfigError(variable, EXPECTED, part or raw)
        limit = int(match[1])
        span_s = float(match[2] or 1) * unit
        if not 1 <= limit <= MAX_WINDOW_LIMIT or span_s <= 0:
            raise ConfigError(
                variable, f"a limit between 1 and {MAX_WINDOW_LIMIT} per a positive span", part
            )
        windows.append(Window(limit, span_s))
    return tuple(sorted(set(windows), key=lambda w: w.span_s))


def rate_window(rate_per_s: float) -> tuple[Window, ...]:
    """The older `_RATE_PER_S` (may be fractional) as a window: 2.5/s is 2 per 0.8 s."""
    if rate_per_s <= 0:
        return ()
    limit = max(1, int(rate_per_s))
    return (Window(limit, limit / rate_per_s),)


class Limits(Protocol):
    """Where turns and leases are booked: in the process, or in the store for all of them."""

    async def take(self, target: str, windows: Sequence[Window], max_wait_s: float) -> float:
        """Book `target`'s next turn under every window: seconds until it (0: now). A turn
        more than `max_wait_s` away is not booked; its distance is returned."""

    async def lease(self, target: str, slots: int, hold_s: float) -> str | None:
        """One of `target`'s `slots` concurrent requests, for at most `hold_s`: its lease id,
        or None when all are taken."""

    async def release(self, target: str, lease: str) -> None:
        """Give the lease back."""


def _book(slots_at: list[float], windows: Sequence[Window], now: float) -> float:
    """When the next turn is, given each window's oldest slot time (in `windows` order)."""
    start = now
    for oldest, window in zip(slots_at, windows, strict=True):
        start = max(start, oldest + window.span_s + window.margin_s())
    return start


class MemoryLimits:
    """The slots of one process (the per-process fallback, and unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slots: dict[tuple[str, str], list[float]] = {}
        self._leases: dict[str, set[str]] = {}

    async def take(self, target: str, windows: Sequence[Window], max_wait_s: float) -> float:
        if not windows:
            return 0.0
        heaps = [
            self._slots.setdefault((target, w.name), [-math.inf] * w.limit) for w in windows
        ]
        now = self._clock()
        start = _book([heap[0] for heap in heaps], windows, now)
        if start - now > max_wait_s:
            return start - now
        for heap in heaps:
            heapq.heapreplace(heap, start)
        return start - now

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

    async def take(self, target: str, windows: Sequence[Window], max_wait_s: float) -> float:
        if not windows:
            return 0.0
        await self._seed(target, windows)
        for _ in range(self.MAX_CONFLICTS):
            try:
                wait: float = await self._store.transaction(
                    lambda conn: self._take(conn, target, windows, max_wait_s)
                )
                return wait
            except Conflict:
                await asyncio.sleep(0)
        return max_wait_s + 0.01  # contended beyond reason: let the caller come back later

    def _take(
        self, conn: Any, target: str, windows: Sequence[Window], max_wait_s: float
    ) -> float:
        oldest = []
        for window in windows:
            row = conn.execute(
                "SELECT slot, at FROM limit_slots WHERE target = ? AND win = ?"
                " ORDER BY at, slot LIMIT 1",
                (target, window.name),
            ).fetchone()
            oldest.append((int(row[0]), float(row[1])))
        now = self._clock()
        start = _book([at for _, at in oldest], windows, now)
        if start - now > max_wait_s:
            return start - now
        for window, (slot, at) in zip(windows, oldest, strict=True):
            booked = conn.execute(
                "UPDATE limit_slots SET at = ? WHERE target = ? AND win = ? AND slot = ?"
                " AND at = ?",
                (start, target, window.name, slot, at),
            ).rowcount
            if booked != 1:
                raise Conflict
        return start - now

    async def _seed(self, target: str, windows: Sequence[Window]) -> None:
        missing = [w for w in windows if (target, w.name) not in self._seeded]
        if not missing:
            return

        def seed(conn: Any) -> None:
            for window in missing:
                conn.executemany(
                    "INSERT INTO limit_slots (target, win, slot, at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (target, win, slot) DO NOTHING",
                    [(target, window.name, slot, 0.0) for slot in range(window.limit)],
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
