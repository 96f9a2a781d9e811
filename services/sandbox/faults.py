"""How the sandbox misbehaves: latency, errors, 429s, garbage and hangs, by chance or aimed
at one person or one page; and the per-key rate limits (`rate_limits`) every fake API
enforces. The knobs can be changed per run (`PUT /_sandbox/config`)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, deque

from aiohttp import web

from services.sandbox.config import Knobs


class RateWindows:
    """Requests per key in a sliding one-second window."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def wait_s(self, name: str, key: str, per_s: float) -> float:
        """0 and counted when allowed, else how long until the window has room."""
        now = time.monotonic()
        window = self._seen.setdefault((name, key), deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= max(1, int(per_s)):
            return 1.0 - (now - window[0])
        window.append(now)
        return 0.0


class Faults:
    def __init__(self, knobs: Knobs, seed: int) -> None:
        self.knobs = knobs
        self.hangs = 0
        # Faults answered by chance, by HTTP status (429 and 503 told apart for tests).
        self.answered: Counter[int] = Counter()
        self.windows = RateWindows()
        # Requests answered "too many" under `rate_limits`, by API name.
        self.rate_limited: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._source_faults_used: dict[int, int] = {}

    def reset(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.hangs = 0
        self.answered.clear()
        self.windows = RateWindows()
        self.rate_limited.clear()
        self._source_faults_used.clear()

    def over_rate(self, name: str, key: str) -> float | None:
        """Under the `rate_limits` knob for `name` (a provider, vendor or source), per key:
        None when this request is allowed (and counted), else the seconds until it would be."""
        per_s = self.knobs.rate_limits.get(name)
        if not per_s:
            return None
        wait = self.windows.wait_s(name, key, per_s)
        if wait <= 0:
            return None
        self.rate_limited[name] += 1
        return wait

    async def misbehave(self, names: list[str]) -> web.StreamResponse | None:
        """A fault by chance (or for a named person), or None to answer normally."""
        knobs = self.knobs
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if any(self.unavailable(name) for name in names):
            return web.json_response({"error": "unavailable for this person"}, status=503)
        roll = self._random.random()
        if roll < knobs.hang_rate:
            self.hangs += 1
            await asyncio.sleep(knobs.hang_s)
            return web.json_response({"error": "slow"}, status=504)
        roll -= knobs.hang_rate
        if roll < knobs.error_rate:
            self.answered[503] += 1
            return web.json_response({"error": "upstream exploded"}, status=503)
        roll -= knobs.error_rate
        if roll < knobs.rate_limit_rate:
            self.answered[429] += 1
            return too_many(knobs.retry_after_s)
        roll -= knobs.rate_limit_rate
        if roll < knobs.malformed_rate:
            return web.Response(body=b'{"email": "trunc', content_type="application/json")
        return None

    def unavailable(self, name: str) -> bool:
        """Whether providers are down for this person (the `unavailable_for` knob)."""
        return any(marker.lower() in name.lower() for marker in self.knobs.unavailable_for)

    def source_fault(self, source: str, page: int) -> web.StreamResponse | None:
        """A fault aimed at one page of one source, for its first `times` requests."""
        for i, fault in enumerate(self.knobs.source_faults):
            if fault.source == source and fault.page == page:
                used = self._source_faults_used.get(i, 0)
                if used < fault.times:
                    self._source_faults_used[i] = used + 1
                    if fault.status == 429:
                        return too_many(fault.retry_after_s)
                    return web.json_response({"error": "aimed fault"}, status=fault.status)
        return None


def too_many(retry_after_s: float) -> web.Response:
    return web.json_response(
        {"error": "rate limited"}, status=429, headers={"Retry-After": f"{retry_after_s:g}"}
    )


def over_rate_answer(wait_s: float) -> web.Response:
    """429 for a key over its `rate_limits`: Retry-After in whole seconds, never 0 (a client
    would come straight back)."""
    return too_many(max(1, math.ceil(wait_s)))
