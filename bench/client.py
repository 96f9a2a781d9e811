"""Driving leadflow from outside: submit jobs, follow their state, watch CSV exports grow.

Waiting is always polling an observable (the job's state, the file's rows) with a
deadline; the poll interval bounds the timing resolution, which the figures state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

TERMINAL = ("completed", "failed", "cancelled", "timed_out")
CSV_POLL_S = 0.05
STATE_POLL_S = 0.2
_encode = msgspec.json.Encoder().encode


class GatewayError(RuntimeError):
    pass


def enrich_body(leads: list[dict[str, Any]], csv_name: str | None) -> bytes:
    """The request body, encoded before any clock starts."""
    destinations: list[dict[str, str]] = [{"type": "dashboard"}]
    if csv_name is not None:
        destinations.append({"type": "csv", "name": csv_name})
    return _encode({"leads": leads, "destinations": destinations})


class Gateway:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def submit(self, body: bytes) -> tuple[str, float]:
        """POST an enrich job; its id and how long the gateway took to accept it."""
        started = time.monotonic()
        async with self.session.post(
            f"{self.base_url}/v1/jobs/enrich",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as response:
            payload = await response.read()
            if response.status != 202:
                raise GatewayError(f"POST /v1/jobs/enrich: {response.status} {payload[:300]!r}")
        job_id: str = msgspec.json.decode(payload)["job_id"]
        return job_id, time.monotonic() - started

    async def job(self, job_id: str) -> dict[str, Any]:
        async with self.session.get(f"{self.base_url}/v1/jobs/{job_id}") as response:
            payload = await response.read()
            if response.status != 200:
                raise GatewayError(f"GET /v1/jobs/{job_id}: {response.status} {payload[:300]!r}")
        status: dict[str, Any] = msgspec.json.decode(payload)
        return status

    async def wait_terminal(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = await self.job(job_id)
            if status["state"] in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['state']} after {timeout_s:g}s")
            await asyncio.sleep(STATE_POLL_S)


@dataclass
class CsvProgress:
    """Rows of a CSV export (header excluded), counted incrementally as the file grows."""

    path: Path
    newlines: int = 0
    first_row_at: float | None = None
    # When the rows first reached 10 % and 90 % of those awaited: the steady-state window.
    tenth_at: float | None = None
    ninetieth_at: float | None = None
    _offset: int = field(default=0, repr=False)

    @property
    def rows(self) -> int:
        return max(0, self.newlines - 1)

    def poll(self) -> int:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        self.newlines += chunk.count(b"\n")
        if self.rows and self.first_row_at is None:
            self.first_row_at = time.monotonic()
        return self.rows

    async def wait_rows(self, count: int, timeout_s: float) -> float:
        """Poll until the file holds `count` rows; the monotonic time it was seen to."""
        deadline = time.monotonic() + timeout_s
        while (rows := self.poll()) < count:
            self._mark(rows, count)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path.name}: {self.rows} of {count} rows after timeout")
            await asyncio.sleep(CSV_POLL_S)
        self._mark(rows, count)
        return time.monotonic()

    def _mark(self, rows: int, count: int) -> None:
        now = time.monotonic()
        if self.tenth_at is None and rows >= count * 0.1:
            self.tenth_at = now
        if self.ninetieth_at is None and rows >= count * 0.9:
            self.ninetieth_at = now


def client_session(connections: int = 100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=120),
    )
