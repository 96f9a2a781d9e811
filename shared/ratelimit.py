"""Turn-taking for the accounts of external APIs: allowances, cooldowns, key pools.

`Gate`: the one way to call one account (a provider key, a source account). `wait_turn()`
respects the account's cooldown and its allowance (its request windows, shared/limits.py):
a short turn is waited, a longer one raises the caller's `TransientError`, so the work goes
back to the broker's delay tier instead of holding a message (and a worker slot) while it
waits. `cool_down()` starts the cooldown after the API said "slow down" (a 429), broadcast
to every worker through the control stream.

`KeyPool`: the keys of one provider (`_KEYS`), each behind its own gate. A turn goes to
the next key, in rotation, that may be called now; a key that is cooling down, or whose
window is used up (for the second, or for the day), is skipped until it reopens. Only when
no key may be called soon does the caller hand its work back, for as long as the soonest
key needs.

`keys_used()`: which keys the calls made from here on in this context went with (the
credit ledger names the key actually used, not the pool's first).

`retry_after_s`: a `Retry-After` header in seconds, bounded, or None (an HTTP date or
garbage: the caller's own backoff applies).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar

from shared.config import ApiSettings
from shared.errors import TransientError
from shared.limits import BOOK_AHEAD_S, Limits, MemoryLimits, Turn
from shared.windows import rate_window

MAX_RETRY_AFTER_S = 3600.0
MIN_COME_BACK_S = 0.05
T = TypeVar("T")
_keys_used: ContextVar[list[str] | None] = ContextVar("keys_used", default=None)


def keys_used() -> list[str]:
    """A list the key secrets of every turn given from here on in this context (and the
    tasks it starts) are appended to, in order."""
    used: list[str] = []
    _keys_used.set(used)
    return used


def keys_given() -> list[str]:
    """The keys given since `keys_used()` in this context (none when it was not called)."""
    return list(_keys_used.get() or ())


def _given(turn: KeyTurn) -> KeyTurn:
    used = _keys_used.get()
    if used is not None:
        used.append(turn.key.secret)
    return turn


def retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def come_back_s(wait_s: float, max_wait_s: float) -> float:
    """When work over an allowance should come back: once its turn is near enough to be
    waited for inline (not when the turn is due: the broker's delay tiers round up)."""
    return max(MIN_COME_BACK_S, wait_s - max_wait_s)


class Cooldowns(Protocol):
    """Where cooldowns are known and told: the control stream (shared/control.py)."""

    def cooldown_left(self, target: str) -> float: ...

    async def start_cooldown(self, target: str, until: float) -> None: ...


class Gate:
    """The turn-taking of one account of an external API.

    `target` names the account on the control stream and in the limits
    (`provider:<name>:key0`, `source:<name>:<account>`); the API's name starts the reasons
    raised (`alpha: cooling down for 2.0s`); a turn at most `max_wait_s` away is waited here.
    `limits` keeps the account's windows: per process unless a shared one is given.
    """

    def __init__(
        self,
        api: ApiSettings,
        target: str,
        cooldowns: Cooldowns,
        *,
        max_wait_s: float,
        limits: Limits | None = None,
    ) -> None:
        self.name = api.name
        self.target = target
        self.cooldown_s = api.cooldown_s
        self.max_wait_s = max_wait_s
        # Settings built by hand (tests) may carry only the older `rate_per_s`.
        self.windows = api.limits or rate_window(api.rate_per_s)
        self.limits = limits if limits is not None else MemoryLimits()
        self._cooldowns = cooldowns

    def cooldown_left(self) -> float:
        return self._cooldowns.cooldown_left(self.target)

    async def wait_turn(
        self, cooling: type[TransientError], over_rate: type[TransientError] | None = None
    ) -> Turn:
        """Return when the account may be called (its turn, to report with `sent`). In a
        cooldown raise `cooling`; when the next turn is over `max_wait_s` away raise
        `over_rate` (`cooling` if not given); either carries `retry_after_s`, the wait."""
        left = self.cooldown_left()
        if left > 0:
            raise cooling(f"{self.name}: cooling down for {left:.1f}s", retry_after_s=left)
        return await self.book(self.max_wait_s, over_rate or cooling)

    async def book(self, max_wait_s: float, over_rate: type[TransientError]) -> Turn:
        """Book the next turn under the windows and wait for it, or raise `over_rate`.

        A turn is booked at most BOOK_AHEAD_S ahead (shared/limits.py): a further one is
        slept towards, then booked."""
        deadline = time.monotonic() + max_wait_s
        while True:
            left_s = max(0.0, deadline - time.monotonic())
            turn = await self.limits.take(self.target, self.windows, min(BOOK_AHEAD_S, left_s))
            if turn.wait_s <= min(BOOK_AHEAD_S, left_s):
                if turn.wait_s > 0:
                    await asyncio.sleep(turn.wait_s)
                return turn
            if turn.wait_s > left_s:
                raise over_rate(
                    f"{self.name}: over its request rate",
                    retry_after_s=come_back_s(turn.wait_s, max_wait_s),
                )
            await asyncio.sleep(turn.wait_s - BOOK_AHEAD_S)

    async def sent(self, turn: Turn) -> None:
        """The request of `turn` leaves now (a late one moves its booking)."""
        await self.limits.sent(self.target, turn)

    async def send(self, turn: Turn, request: Awaitable[T]) -> T:
        """Await `request` (the call `turn` was booked for), reporting the turn as sent as
        it leaves (the report's time is read once the request has started)."""
        answer, _ = await asyncio.gather(request, self.sent(turn), return_exceptions=True)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def cool_down(self, retry_after_s: float | None) -> float:
        """Start the account's cooldown, for the API's `Retry-After` or the configured one;
        the pause it is."""
        pause = retry_after_s or self.cooldown_s
        await self._cooldowns.start_cooldown(self.target, time.time() + pause)
        return pause


@dataclass(frozen=True)
class Key:
    """One key of a pool: `label` names it in logs and targets (never the key itself)."""

    label: str
    secret: str
    gate: Gate


@dataclass(frozen=True)
class KeyTurn:
    """A key with its booked turn: send now, and report it with `sent()`."""

    key: Key
    turn: Turn

    async def sent(self) -> None:
        await self.key.gate.sent(self.turn)

    async def send(self, request: Awaitable[T]) -> T:
        """Await `request`, the call this turn was booked for (see `Gate.send`)."""
        return await self.key.gate.send(self.turn, request)


class KeyPool:
    """A provider's keys, used in rotation, each within its own allowance and cooldown."""

    def __init__(
        self,
        api: ApiSettings,
        prefix: str,
        cooldowns: Cooldowns,
        *,
        max_wait_s: float,
        limits: Limits | None = None,
    ) -> None:
        self.name = api.name
        self.max_wait_s = max_wait_s
        shared = limits if limits is not None else MemoryLimits()
        self.keys = tuple(
            Key(
                f"key{i}",
                secret,
                Gate(api, f"{prefix}:key{i}", cooldowns, max_wait_s=max_wait_s, limits=shared),
            )
            for i, secret in enumerate(api.keys)
        )
        self._next = 0

    async def turn(
        self, cooling: type[TransientError], over_rate: type[TransientError] | None = None
    ) -> KeyTurn:
        """A key that may be called now (its turn booked): the next in rotation with a turn
        free now, else the one whose turn is soonest, waited for when at most `max_wait_s`
        away. Raises `cooling` when every key cools down, `over_rate` (or `cooling`) when
        no key has a turn soon; with `retry_after_s`, the soonest any key may go."""
        n = len(self.keys)
        first = self._next
        self._next = (first + 1) % n
        soonest: tuple[float, Key] | None = None
        cooling_for = math.inf
        for i in range(n):
            key = self.keys[(first + i) % n]
            left = key.gate.cooldown_left()
            if left > 0:
                cooling_for = min(cooling_for, left)
                continue
            turn = await key.gate.limits.take(key.gate.target, key.gate.windows, 0.0)
            if turn.wait_s <= 0:
                return _given(KeyTurn(key, turn))
            if soonest is None or turn.wait_s < soonest[0]:
                soonest = (turn.wait_s, key)
        if soonest is None:
            raise cooling(
                f"{self.name}: cooling down for {cooling_for:.1f}s", retry_after_s=cooling_for
            )
        wait, key = soonest
        if wait > self.max_wait_s:
            # A cooling key may reopen before the windows of the others do.
            raise (over_rate or cooling)(
                f"{self.name}: every key over its request rate",
                retry_after_s=min(come_back_s(wait, self.max_wait_s), cooling_for),
            )
        return _given(KeyTurn(key, await key.gate.book(self.max_wait_s, over_rate or cooling)))
