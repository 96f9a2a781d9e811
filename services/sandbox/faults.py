"""How the sandbox misbehaves: latency, errors, 429s, garbage and hangs, by chance or aimed
at one person or one page. The knobs can be changed per run (`PUT /_sandbox/config`)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from aiohttp import web

from services.sandbox.config import Knobs


class Faults:
    def __init__(self, knobs: Knobs, seed: int) -> None:
        self.knobs = knobs
        self.hangs = 0
        # Faults answered by chance, by HTTP status (429 and 503 told apart for tests).
        self.answered: Counter[int] = Counter()
        self._random = random.Random(seed)
        self._source_faults_used: dict[int, int] = {}

    def reset(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.hangs = 0
        self.answered.clear()
        self._source_faults_used.clear()

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
