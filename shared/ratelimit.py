"""A token bucket: at most `rate_per_s` requests a second on average, bursts of `burst`.

`take()` either takes a token (returns 0) or says how long until one is free, without
taking it, so the caller chooses: wait briefly, or hand the work back to the broker.
"""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, rate_per_s)
        self._tokens = self.capacity
        self._at = time.monotonic()

    @property
    def unlimited(self) -> bool:
        return self.rate_per_s <= 0

    def take(self) -> float:
        if self.unlimited:
            return 0.0
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s
