"""`GET /v1/jobs/{id}/events`: a job's progress, result leads and state as Server-Sent Events.

The router is the single writer of job status; the gateway only reads the store. Each open
stream therefore polls the store on its own, reading in one snapshot the job row and the
next page of leads with `seq` greater than the last one it sent, and writes:

- `lead`: a result lead exactly as `GET /v1/jobs/{id}/leads` returns it; its id is the
  lead's `seq`;
- `progress`: `{"job_id", "progress", "destinations"}`, only when that changed;
- `state`: `{"job_id", "state", "error", "started_at", "finished_at"}`, when that changed.

Every event's id is the `seq` of the last lead sent on the stream (0 before any), so a
reconnect with `Last-Event-ID` gets the current progress and state, then only the leads
it has not seen; `?leads=false` leaves the leads out (a progress bar needs no results).
A terminal state is sent once every lead is out, and the stream ends.
Idle streams get a `: ping` comment so proxies keep them open; at shutdown every stream
ends without a terminal state and clients reconnect (to this gateway or another).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial

import msgspec
from aiohttp import web
from prometheus_client import Gauge

from services.gateway.keys import METRICS, STORE, tenant_of
from services.gateway.problems import FieldError, Problem, invalid
from services.gateway.queries import get_job
from shared.jobs import TERMINAL_STATES, DestinationStatus, JobStatus, Progress
from shared.logging import get_logger

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode
MAX_EVENT_ID = 10**18


@dataclass(frozen=True)
class StreamSettings:
    poll_interval_s: float = 0.4
    heartbeat_s: float = 15.0
    page_size: int = 500
    # What EventSource-style clients wait before reconnecting (the SSE `retry` field).
    retry_ms: int = 2000


class ProgressEvent(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    progress: Progress
    destinations: list[DestinationStatus]


class StateEvent(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    state: str
    error: str | None
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class Snapshot:
    job: JobStatus
    leads: list[tuple[int, bytes]]
    more: bool  # the page was full: more leads are waiting right now

    @property
    def drained_terminal(self) -> bool:
        return self.job.state in TERMINAL_STATES and not self.more


class Streams:
    """The open event streams of one gateway: settings, a count, the shutdown signal."""

    def __init__(self, settings: StreamSettings, gauge: Gauge) -> None:
        self.settings = settings
        self.open = gauge
        self.closing = asyncio.Event()


STREAMS = web.AppKey("event_streams", Streams)


def setup_events(app: web.Application, settings: StreamSettings | None = None) -> None:
    gauge = Gauge(
        "leadflow_gateway_event_streams",
        "Open `GET /v1/jobs/{id}/events` streams.",
        registry=app[METRICS].registry,
    )
    app[STREAMS] = Streams(settings or StreamSettings(), gauge)
    app.router.add_get("/v1/jobs/{job_id}/events", job_events)
    app.on_shutdown.append(_end_streams)


async def _end_streams(app: web.Application) -> None:
    # Runs before aiohttp waits for open handlers, so streams do not hold up a stop.
    app[STREAMS].closing.set()


async def job_events(request: web.Request) -> web.StreamResponse:
    streams = request.app[STREAMS]
    job_id = request.match_info["job_id"]
    after = last_event_id(request)
    read = partial(
        read_snapshot,
        tenant=tenant_of(request),
        job_id=job_id,
        limit=streams.settings.page_size if wants_leads(request) else 0,
    )
    store = request.app[STORE]
    snapshot = await store.run(partial(read, after=after))
    if snapshot is None:
        raise Problem(404, f"no job {job_id!r}")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-transform",
            # nginx buffers proxied responses unless told not to.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    writer = EventWriter(response, job_id, after)
    streams.open.inc()
    opened = time.monotonic()
    outcome = "shutdown"
    try:
        await writer.write(f"retry: {streams.settings.retry_ms}\n\n".encode())
        while snapshot is not None:
            await writer.send(snapshot)
            if snapshot.drained_terminal:
                outcome = "terminal"
                break
            if not snapshot.more and await _closing_within(streams, writer):
                break
            if _disconnected(request):
                outcome = "client_gone"
                break
            snapshot = await store.run(partial(read, after=writer.last_seq))
        else:
            outcome = "job_gone"
        await response.write_eof()
    except ConnectionResetError:
        outcome = "client_gone"
    finally:
        streams.open.dec()
        log.info(
            "events.closed",
            job_id=job_id,
            outcome=outcome,
            resumed_after=after,
            leads_sent=writer.leads_sent,
            duration_s=round(time.monotonic() - opened, 3),
        )
    return response


async def _closing_within(streams: Streams, writer: EventWriter) -> bool:
    """Wait one poll interval (sending a heartbeat when due); True when shutting down."""
    with suppress(TimeoutError):
        await asyncio.wait_for(streams.closing.wait(), streams.settings.poll_interval_s)
        return True
    if time.monotonic() - writer.last_write >= streams.settings.heartbeat_s:
        await writer.write(b": ping\n\n")
    return False


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class EventWriter:
    """Turns snapshots into SSE events, remembering what the client already has."""

    def __init__(self, response: web.StreamResponse, job_id: str, after: int) -> None:
        self.response = response
        self.job_id = job_id
        self.last_seq = after
        self.leads_sent = 0
        self.last_write = time.monotonic()
        self._progress: bytes | None = None
        self._state: bytes | None = None

    async def send(self, snapshot: Snapshot) -> None:
        chunks = [sse_event("lead", data, seq) for seq, data in snapshot.leads]
        if snapshot.leads:
            self.last_seq = snapshot.leads[-1][0]
            self.leads_sent += len(snapshot.leads)
        job = snapshot.job
        progress = _encode(
            ProgressEvent(job_id=job.job_id, progress=job.progress, destinations=job.destinations)
        )
        if progress != self._progress:
            self._progress = progress
            chunks.append(sse_event("progress", progress, self.last_seq))
        # A terminal state is held back until every lead is out: it closes the stream.
        if job.state not in TERMINAL_STATES or not snapshot.more:
            state = _encode(
                StateEvent(
                    job_id=job.job_id,
                    state=job.state,
                    error=job.error,
                    started_at=job.started_at,
                    finished_at=job.finished_at,
                )
            )
            if state != self._state:
                self._state = state
                chunks.append(sse_event("state", state, self.last_seq))
        if chunks:
            await self.write(b"".join(chunks))

    async def write(self, data: bytes) -> None:
        await self.response.write(data)
        self.last_write = time.monotonic()


def sse_event(name: str, data: bytes, event_id: int) -> bytes:
    # JSON from msgspec has no raw newlines; splitting keeps any other payload valid SSE.
    lines = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    return f"event: {name}\nid: {event_id}\n".encode() + lines + b"\n"


def last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    if raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_EVENT_ID:
        raise invalid(
            [FieldError("Last-Event-ID", "must be an event id this stream sent (an integer)")],
            400,
        )
    return int(raw)


def wants_leads(request: web.Request) -> bool:
    value = request.query.get("leads", "true")
    if value not in ("true", "false"):
        raise invalid([FieldError("leads", "must be true or false")])
    return value == "true"


def read_snapshot(
    conn: sqlite3.Connection, *, tenant: str, job_id: str, after: int, limit: int
) -> Snapshot | None:
    with read_transaction(conn):
        job = get_job(conn, tenant, job_id)
        if job is None:
            return None
        if limit == 0:
            return Snapshot(job, [], more=False)
        rows = conn.execute(
            "SELECT seq, data FROM leads WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after, limit + 1),
        ).fetchall()
    return Snapshot(job, [(row["seq"], row["data"]) for row in rows[:limit]], len(rows) > limit)


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # One WAL snapshot for the job row and its leads: a terminal state is committed with
    # the job's last leads, so a snapshot that shows it also holds every lead.
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")
