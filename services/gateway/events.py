"""`GET /v1/jobs/{id}/events`: a job's progress, result leads and state as Server-Sent Events.

The router is the single writer of job status; the gateway only reads the store. Events:

- `lead`: a result lead exactly as `GET /v1/jobs/{id}/leads` returns it; its id is the
  lead's `seq`;
- `progress`: `{"job_id", "progress", "destinations"}`, only when that changed;
- `state`: `{"job_id", "state", "error", "started_at", "finished_at"}`, when that changed.

Every event's id is the `seq` of the last lead sent on the stream (0 before any), so a
reconnect with `Last-Event-ID` gets the current progress and state, then only the leads
it has not seen; `?leads=false` leaves the leads out (a progress bar needs no results).
A new stream (no Last-Event-ID) replays the job's leads from the first only when it asks
(`?leads=true`) or the job has at most `replay_leads` results; otherwise, and with
`?leads=new`, it starts after the newest lead: a client that connects late to a
million-lead job gets the leads from then on, not a million events in one burst.
A terminal state is sent once every lead is out, and the stream ends. Idle streams get a
`: ping` comment so proxies keep them open.

One poller per job (the `JobHub`), not one per stream: while at least one stream of a job
is open on this gateway, one task reads the store for it every poll interval (the job row
and the leads after the last one it read, in one snapshot) and keeps the newest
`buffer_leads` leads in memory. Each stream takes from that buffer what it has not sent,
at its own pace. A stream further behind than the buffer reaches — a client that resumes
from long ago, or one too slow to keep up — reads its gap from the store itself, a page at
a time, then follows the hub again: the slow client is dropped from the buffer and
resynced, never waited for, so it cannot hold the poller or other streams. A client that
takes no data at all for `write_timeout_s` is disconnected (it resumes with Last-Event-ID).

Bounds, per gateway (`LEADFLOW_SSE_*`): streams open in total and per tenant (beyond
either, 429 problem+json with `Retry-After`: the time until the first of those streams
reaches its lifetime), and a stream's lifetime: after about `LEADFLOW_SSE_MAX_LIFETIME_S`
(jittered down by up to 10 % so streams opened together do not all reconnect together)
the server ends the stream without a terminal state; the client reconnects after the
`retry:` hint sent first on every stream, with Last-Event-ID, and loses nothing: every
event's id covers exactly the leads written before it. At shutdown every stream ends
the same way, and clients reconnect (to this gateway or another).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from bisect import bisect_right
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.gateway.config import StreamLimits
from services.gateway.errors import JobNotFound, TooManyStreams
from services.gateway.keys import METRICS, SETTINGS, STORE, tenant_of
from services.gateway.params import EVENTS_LEADS, LAST_EVENT_ID
from services.gateway.queries import get_job
from shared.dbapi import Connection
from shared.errors import StoreUnavailable
from shared.jobs import DestinationStatus, JobStatus, Progress
from shared.jobstate import TERMINAL
from shared.logging import get_logger
from shared.store import Store

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode
# A poller that cannot read the store backs off up to this long between attempts.
MAX_POLL_BACKOFF_S = 5.0


@dataclass(frozen=True)
class StreamSettings:
    poll_interval_s: float = 0.4
    heartbeat_s: float = 15.0
    page_size: int = 500
    # What EventSource-style clients wait before reconnecting (the SSE `retry` field).
    retry_ms: int = 2000
    # Leads a job's hub keeps for its streams (memory: about 1 KiB each, per job with open
    # streams); a stream further behind reads the store. Two polls' worth at full speed.
    buffer_leads: int = 1000
    # A client that takes nothing for this long is disconnected.
    write_timeout_s: float = 30.0
    # A new stream of a job with more results than this starts at the newest one unless
    # it asks for all (`?leads=true`): the most a JSON body may submit.
    replay_leads: int = 10_000
    limits: StreamLimits = field(default_factory=StreamLimits)


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
        return self.job.state in TERMINAL and not self.more


@dataclass(frozen=True)
class Ticket:
    """A stream admitted under the caps; it must end by `deadline` (monotonic)."""

    number: int
    tenant: str
    deadline: float


class Streams:
    """The open event streams of one gateway: caps, lifetimes, one hub per job, shutdown."""

    def __init__(self, settings: StreamSettings, store: Store, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.store = store
        self.open = Gauge(
            "leadflow_gateway_event_streams",
            "Open `GET /v1/jobs/{id}/events` streams.",
            registry=registry,
        )
        self.pollers = Gauge(
            "leadflow_gateway_event_pollers",
            "Jobs whose store poller runs for their open event streams.",
            registry=registry,
        )
        self.refused = Counter(
            "leadflow_gateway_event_streams_refused",
            "Event streams refused with 429, by the cap reached (total, tenant).",
            ["cap"],
            registry=registry,
        )
        self.closing = asyncio.Event()
        self.hubs: dict[tuple[str, str], JobHub] = {}
        self._tickets: dict[int, Ticket] = {}
        self._per_tenant: Tally[str] = Tally()
        self._numbers = 0
        self._stopping: set[asyncio.Task[None]] = set()

    def admit(self, tenant: str) -> Ticket:
        """A ticket for a new stream; TooManyStreams when a cap is reached."""
        limits = self.settings.limits
        now = time.monotonic()
        if len(self._tickets) >= limits.max_streams:
            self._refuse("total", now, list(self._tickets.values()))
        if self._per_tenant[tenant] >= limits.max_streams_per_tenant:
            self._refuse("tenant", now, [t for t in self._tickets.values() if t.tenant == tenant])
        self._numbers += 1
        lifetime_s = limits.max_lifetime_s * random.uniform(0.9, 1.0)
        ticket = Ticket(self._numbers, tenant, now + lifetime_s)
        self._tickets[ticket.number] = ticket
        self._per_tenant[tenant] += 1
        self.open.inc()
        return ticket

    def release(self, ticket: Ticket) -> None:
        if self._tickets.pop(ticket.number, None) is not None:
            self._per_tenant[ticket.tenant] -= 1
            if self._per_tenant[ticket.tenant] <= 0:
                del self._per_tenant[ticket.tenant]
            self.open.dec()

    def _refuse(self, cap: str, now: float, held: list[Ticket]) -> None:
        # A slot is free at the latest when the first of these streams reaches its lifetime.
        first_end = min((t.deadline for t in held), default=now)
        retry_after_s = max(1, math.ceil(first_end - now))
        self.refused.labels(cap).inc()
        raise TooManyStreams(cap=cap, held=len(held), retry_after_s=retry_after_s)

    def attach(self, tenant: str, job_id: str) -> JobHub:
        """The hub of a job, started for its first stream."""
        hub = self.hubs.get((tenant, job_id))
        if hub is None:
            hub = self.hubs[(tenant, job_id)] = JobHub(self, tenant, job_id)
            hub.start()
        hub.listeners += 1
        return hub

    def detach(self, hub: JobHub) -> None:
        hub.listeners -= 1
        if hub.listeners == 0:
            self._forget(hub)
            task = hub.stop()
            if task is not None:
                # Kept until done, and awaited at shutdown: no poller outlives the app.
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    def _forget(self, hub: JobHub) -> None:
        if self.hubs.get(hub.key) is hub:
            del self.hubs[hub.key]

    def end_all(self) -> None:
        self.closing.set()
        for hub in self.hubs.values():
            hub.wake()

    async def wait_stopped(self) -> None:
        for hub in list(self.hubs.values()):
            if (task := hub.stop()) is not None:
                self._stopping.add(task)
        await asyncio.gather(*self._stopping, return_exceptions=True)


STREAMS = web.AppKey("event_streams", Streams)


class JobHub:
    """The one poller of a job on this gateway, and the leads it read, for every stream."""

    def __init__(self, streams: Streams, tenant: str, job_id: str) -> None:
        self.streams = streams
        self.key = (tenant, job_id)
        self.listeners = 0
        self.job: JobStatus | None = None
        self.more = False
        self.gone = False  # the job was deleted
        self.stopped = False
        # The buffer holds every lead of the job with floor < seq <= the last one read.
        self.floor = 0
        self._seqs: list[int] = []
        self._data: list[bytes] = []
        self.started = 0  # polls begun
        self.version = 0  # the number of the poll whose result is published
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next change (or at shutdown); take it before reading the hub's state."""
        return self._changed

    @property
    def last_seq(self) -> int:
        return self._seqs[-1] if self._seqs else self.floor

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"events-hub-{self.key[1]}")

    def stop(self) -> asyncio.Task[None] | None:
        if self._task is None or self._task.done():
            return None
        self._task.cancel()
        return self._task

    def wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def leads_after(self, seq: int, limit: int) -> tuple[list[tuple[int, bytes]], bool]:
        """Up to `limit` buffered leads after `seq`, and whether more are buffered."""
        start = bisect_right(self._seqs, seq)
        end = min(len(self._seqs), start + limit)
        return list(zip(self._seqs[start:end], self._data[start:end], strict=True)), end < len(
            self._seqs
        )

    async def _run(self) -> None:
        settings = self.streams.settings
        tenant, job_id = self.key
        self.streams.pollers.inc()
        backoff_s = settings.poll_interval_s
        try:
            while True:
                self.started += 1
                number = self.started
                read = (
                    partial(read_tail, tenant=tenant, job_id=job_id)
                    if self.job is None
                    else partial(
                        read_snapshot,
                        tenant=tenant,
                        job_id=job_id,
                        after=self.last_seq,
                        limit=settings.page_size,
                    )
                )
                try:
                    snapshot = await self.streams.store.run(read)
                except StoreUnavailable as e:
                    # Streams stay open (with heartbeats) and catch up when the store is back.
                    log.warning("events.poll_failed", job_id=job_id, error=str(e))
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, MAX_POLL_BACKOFF_S)
                    continue
                backoff_s = settings.poll_interval_s
                if not self.publish(snapshot, number):
                    return
                if not self.more:
                    await asyncio.sleep(settings.poll_interval_s)
        except Exception:
            # Its streams end ("poller_stopped") and reconnect, which starts a new poller.
            log.exception("events.poller_failed", job_id=job_id)
        finally:
            self.stopped = True
            self.streams.pollers.dec()
            self.streams._forget(self)
            self.wake()

    def publish(self, snapshot: Snapshot | tuple[Snapshot, int] | None, number: int) -> bool:
        """Take a poll's result; False once nothing can change any more."""
        self.version = number
        if snapshot is None:
            self.gone = True
            self.wake()
            return False
        if isinstance(snapshot, tuple):
            snapshot, self.floor = snapshot
        changed = bool(snapshot.leads) or snapshot.job != self.job or snapshot.more != self.more
        for seq, data in snapshot.leads:
            self._seqs.append(seq)
            self._data.append(data)
        excess = len(self._seqs) - self.streams.settings.buffer_leads
        if excess > 0:
            self.floor = self._seqs[excess - 1]
            del self._seqs[:excess], self._data[:excess]
        self.job, self.more = snapshot.job, snapshot.more
        if changed:
            self.wake()
        return not snapshot.drained_terminal


def setup_events(app: web.Application, settings: StreamSettings | None = None) -> None:
    if settings is None:
        settings = StreamSettings(limits=app[SETTINGS].streams)
    app[STREAMS] = Streams(settings, app[STORE], app[METRICS].registry)
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_stop_pollers)


async def _end_streams(app: web.Application) -> None:
    # Runs before aiohttp waits for open handlers, so streams do not hold up a stop.
    app[STREAMS].end_all()


async def _stop_pollers(app: web.Application) -> None:
    await app[STREAMS].wait_stopped()


async def job_events(request: web.Request) -> web.StreamResponse:
    streams = request.app[STREAMS]
    job_id = request.match_info["job_id"]
    after = LAST_EVENT_ID.read(request)
    asked = EVENTS_LEADS.read(request)
    wants = asked != "false"
    tenant = tenant_of(request)
    ticket = streams.admit(tenant)
    try:
        if wants and after == 0 and asked != "true":
            after = await starting_seq(streams, tenant, job_id, only_new=asked == "new")
        first = await read_first(streams, tenant, job_id, after, wants)
        if first is None:
            raise JobNotFound(job_id)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-transform",
                # nginx buffers proxied responses unless told not to.
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        writer = EventWriter(
            response.write, partial(_connected, request), after, streams.settings.write_timeout_s
        )
        outcome = await follow(streams, ticket, job_id, first, writer, wants_leads=wants)
        if outcome == "slow_client":
            if request.transport is not None:
                request.transport.close()
        else:
            with suppress(ConnectionResetError):
                await response.write_eof()
        return response
    finally:
        streams.release(ticket)


async def starting_seq(streams: Streams, tenant: str, job_id: str, *, only_new: bool) -> int:
    """Where a new stream starts: after the job's newest lead when it asked for new leads
    only, or when the job has more results than a stream replays unasked (a client that
    connects late to a million-lead job does not get a million events at once); else at
    the first lead."""
    tail = await streams.store.run(partial(read_tail, tenant=tenant, job_id=job_id))
    if tail is None:
        raise JobNotFound(job_id)
    snapshot, last_seq = tail
    done = snapshot.job.progress.done
    return last_seq if only_new or done > streams.settings.replay_leads else 0


async def read_first(
    streams: Streams, tenant: str, job_id: str, after: int, wants_leads: bool
) -> Snapshot | None:
    """The stream's first snapshot (None: no such job of this tenant), read by the stream."""
    limit = streams.settings.page_size if wants_leads else 0
    return await streams.store.run(
        partial(read_snapshot, tenant=tenant, job_id=job_id, after=after, limit=limit)
    )


async def follow(
    streams: Streams,
    ticket: Ticket,
    job_id: str,
    first: Snapshot,
    writer: EventWriter,
    *,
    wants_leads: bool,
) -> str:
    """Send `first`, then follow the job through its hub until the stream ends; the outcome."""
    hub = streams.attach(ticket.tenant, job_id)
    follower = Follower(streams, hub, writer, ticket, wants_leads=wants_leads)
    opened = time.monotonic()
    outcome = "shutdown"
    try:
        await writer.write(f"retry: {streams.settings.retry_ms}\n\n".encode())
        outcome = await follower.run(first)
    except ConnectionResetError:
        outcome = "client_gone"
    except TimeoutError:
        outcome = "slow_client"
    finally:
        streams.detach(hub)
        log.info(
            "events.closed",
            job_id=job_id,
            outcome=outcome,
            resumed_after=writer.after,
            leads_sent=writer.leads_sent,
            store_reads=follower.store_reads,
            duration_s=round(time.monotonic() - opened, 3),
        )
    return outcome


class Follower:
    """One stream's way through a job: its hub's buffer while it keeps up, the store when
    it is behind the buffer, and the reasons a stream ends."""

    def __init__(
        self,
        streams: Streams,
        hub: JobHub,
        writer: EventWriter,
        ticket: Ticket,
        *,
        wants_leads: bool,
    ) -> None:
        self.streams = streams
        self.hub = hub
        self.writer = writer
        self.ticket = ticket
        self.wants_leads = wants_leads
        self.page_size = streams.settings.page_size if wants_leads else 0
        # The hub's state is newer than what this stream read itself only from a poll
        # begun after that read ended: older polls could move progress backwards.
        self.mark = hub.started
        self.seen = 0  # the hub version this stream last took
        self.catching_up = False  # the last store read filled its page
        self.store_reads = 0
        self.backoff_s = streams.settings.poll_interval_s / 2  # between failed store reads

    async def run(self, snapshot: Snapshot) -> str:
        self.catching_up = snapshot.more
        while True:
            await self.writer.send(snapshot)
            if snapshot.drained_terminal:
                return "terminal"
            following = await self._next()
            if isinstance(following, str):
                return following
            snapshot = following

    async def _next(self) -> Snapshot | str:
        while True:
            if (ended := self._ended()) is not None:
                return ended
            hub = self.hub
            fresh = hub.version > self.mark
            behind = self.wants_leads and self.writer.last_seq < hub.floor
            if self.catching_up or (fresh and behind):
                read = await self._read_store()
                if read is not None:
                    return read
                # The store is unavailable: wait it out like the hub, heartbeats going.
                await self._wait(self.streams.closing, at_most_s=self._backoff())
                continue
            if fresh and (hub.version > self.seen or self._buffered(hub)):
                return self._from_hub(hub)
            if hub.stopped:
                return "poller_stopped"
            await self._wait(hub.changed)

    def _ended(self) -> str | None:
        if self.streams.closing.is_set():
            return "shutdown"
        if time.monotonic() >= self.ticket.deadline:
            return "lifetime"
        if not self.writer.connected():
            return "client_gone"
        return None

    def _buffered(self, hub: JobHub) -> bool:
        return self.wants_leads and hub.last_seq > self.writer.last_seq

    def _from_hub(self, hub: JobHub) -> Snapshot | str:
        self.seen = hub.version
        if hub.gone or hub.job is None:
            return "job_gone"
        if not self.wants_leads:
            return Snapshot(hub.job, [], more=False)
        leads, buffered = hub.leads_after(self.writer.last_seq, self.page_size)
        return Snapshot(hub.job, leads, more=buffered or hub.more)

    def _backoff(self) -> float:
        self.backoff_s = min(self.backoff_s * 2, MAX_POLL_BACKOFF_S)
        return self.backoff_s

    async def _read_store(self) -> Snapshot | str | None:
        """The next page after what the client has; None while the store is unavailable."""
        tenant, job_id = self.hub.key
        try:
            snapshot = await self.streams.store.run(
                partial(
                    read_snapshot,
                    tenant=tenant,
                    job_id=job_id,
                    after=self.writer.last_seq,
                    limit=self.page_size,
                )
            )
        except StoreUnavailable as e:
            log.warning("events.read_failed", job_id=job_id, error=str(e))
            return None
        self.backoff_s = self.streams.settings.poll_interval_s / 2
        self.store_reads += 1
        self.mark = self.hub.started
        if snapshot is None:
            return "job_gone"
        self.catching_up = snapshot.more
        return snapshot

    async def _wait(self, changed: asyncio.Event, at_most_s: float = math.inf) -> None:
        """Until `changed` is set, the stream's end of life, `at_most_s`, or a heartbeat is
        due (then sent)."""
        now = time.monotonic()
        heartbeat_at = self.writer.last_write + self.streams.settings.heartbeat_s
        until = min(heartbeat_at, self.ticket.deadline, now + at_most_s)
        with suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), until - now)
        if time.monotonic() >= heartbeat_at and self._ended() is None:
            await self.writer.write(b": ping\n\n")


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


class EventWriter:
    """Turns snapshots into SSE events, remembering what the client already has."""

    def __init__(
        self,
        sink: Callable[[bytes], Awaitable[None]],
        connected: Callable[[], bool],
        after: int,
        write_timeout_s: float,
    ) -> None:
        self.sink = sink
        self.connected = connected
        self.after = after
        self.last_seq = after
        self.leads_sent = 0
        self.write_timeout_s = write_timeout_s
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
        if job.state not in TERMINAL or not snapshot.more:
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
        # A client that takes nothing for this long is cut off (TimeoutError): it would
        # otherwise hold its slot and this coroutine for ever.
        async with asyncio.timeout(self.write_timeout_s):
            await self.sink(data)
        self.last_write = time.monotonic()


def sse_event(name: str, data: bytes, event_id: int) -> bytes:
    # JSON from msgspec has no raw newlines; splitting keeps any other payload valid SSE.
    lines = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    return f"event: {name}\nid: {event_id}\n".encode() + lines + b"\n"


def read_snapshot(
    conn: Connection, *, tenant: str, job_id: str, after: int, limit: int
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


def read_tail(conn: Connection, *, tenant: str, job_id: str) -> tuple[Snapshot, int] | None:
    """A hub's first read: the job, and the seq of its last lead (the hub starts after it)."""
    with read_transaction(conn):
        job = get_job(conn, tenant, job_id)
        if job is None:
            return None
        row = conn.execute(
            "SELECT coalesce(max(seq), 0) AS tail FROM leads WHERE job_id = ?", (job_id,)
        ).fetchone()
    return Snapshot(job, [], more=False), int(row["tail"])


@contextmanager
def read_transaction(conn: Connection) -> Iterator[None]:
    # One WAL snapshot for the job row and its leads: a terminal state is committed with
    # the job's last leads, so a snapshot that shows it also holds every lead.
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")
