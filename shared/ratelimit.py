"""Request rates, cooldowns and the waits other services ask for.

`Gate`: the one way to call an account of an external API (a provider key, a source
account). `wait_turn()` respects the account's cooldown and request rate: a short turn is
waited, a longer one raises the caller's `TransientError`, so the work goes back to the
broker's delay tier instead of holding a message (and a worker slot) while it waits.
`cool_down()` starts the cooldown after the API said "slow down" (a 429), broadcast to
every worker through the control stream.

`TokenBucket`: at most `rate_per_s` requests a second on average, bursts of `burst`.
`reserve(max_wait_s)` books the next free turn and says how long until it: the caller
waits that long, or, when it is more than `max_wait_s`, gets it refunded (nothing
booked) and hands the work back to the broker instead of holding it.

`retry_after_s`: a `Retry-After` header in seconds, bounded, or None (an HTTP date or
garbage: the caller's own backoff applies).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol

from shared.config import ApiSettings
from shared.errors import TransientError

MAX_RETRY_AFTER_S = 3600.0


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, rate_per_s)
        self._tokens = self.capacity
        self._at = time.monotonic()

    @property
    def unlimited(self) -> bool:
        return self.rate_per_s <= 0

    def reserve(self, max_wait_s: float) -> float:
        """Seconds until this request's turn (0: now). A wait over `max_wait_s` is
        returned without booking the turn."""
        if self.unlimited:
            return 0.0
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        wait = max(0.0, (1.0 - self._tokens) / self.rate_per_s)
        if wait <= max_wait_s:
            self._tokens -= 1.0  # booked: later callers queue behind this turn
        return wait


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


class Cooldowns(Protocol):
    """Where cooldowns are known and told: the control stream (shared/control.py)."""

    def cooldown_left(self, target: str) -> float: ...

    async def start_cooldown(self, target: str, until: float) -> None: ...


class Gate:
    """The turn-taking of one account of an external API.

    `target` names the account on the control stream (`provider:<name>`,
    `source:<name>:<account>`); the API's name starts the reasons raised (`alpha: cooling
    down for 2.0s`); a turn at most `max_wait_s` away is waited here.
    """

    def __init__(
        self, api: ApiSettings, target: str, cooldowns: Cooldowns, *, max_wait_s: float
    ) -> None:
        self.name = api.name
        self.target = target
        self.cooldown_s = api.cooldown_s
        self.max_wait_s = max_wait_s
        self._bucket = TokenBucket(api.rate_per_s)
        self._cooldowns = cooldowns

    async def wait_turn(
        self, cooling: type[TransientError], over_rate: type[TransientError] | None = None
    ) -> None:
        """Return when the account may be called. In a cooldown raise `cooling`; when the
        next turn is over `max_wait_s` away raise `over_rate` (`cooling` if not given);
        either carries `retry_after_s`, the wait."""
        left = self._cooldowns.cooldown_left(self.target)
        if left > 0:
            raise cooling(f"{self.name}: cooling down for {left:.1f}s", retry_after_s=left)
        wait = self._bucket.reserve(self.max_wait_s)
        if wait > self.max_wait_s:
            raise (over_rate or cooling)(f"{self.name}: over its request rate", retry_after_s=wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def cool_down(self, retry_after_s: float | None) -> float:
        """Start the account's cooldown, for the API's `Retry-After` or the configured one;
        the pause it is."""
        pause = retry_after_s or self.cooldown_s
        await self._cooldowns.start_cooldown(self.target, time.time() + pause)
        return pause
