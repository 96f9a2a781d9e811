"""Request rates and the waits other services ask for.

`TokenBucket`: at most `rate_per_s` requests a second on average, bursts of `burst`.
`reserve(max_wait_s)` books the next free turn and says how long until it: the caller
waits that long, or, when it is more than `max_wait_s`, gets it refunded (nothing
booked) and hands the work back to the broker instead of holding it.

`retry_after_s`: a `Retry-After` header in seconds, bounded, or None (an HTTP date or
garbage: the caller's own backoff applies).
"""

from __future__ import annotations

import math
import time

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
