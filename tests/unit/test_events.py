"""The job event stream against a real SQLite store and an in-process gateway app (no broker):
auth, event order and ids, resuming, paging, heartbeats and shutdown; one poller per job for
every stream, slow clients, the caps on open streams and the stream lifetime."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.gateway.auth import auth_middleware, setup_auth
from services.gateway.config import StreamLimits, load_settings
from services.gateway.events import (
    STREAMS,
    EventWriter,
    Follower,
    JobHub,
    Streams,
    StreamSettings,
    follow,
    read_first,
    read_snapshot,
    setup_events,
    sse_event,
)
from services.gateway.keys import METRICS, SETTINGS, STORE
from services.gateway.operations import add_routes
from services.gateway.problems import problem_middleware
from services.router.ledger import record_events
from shared.config import EnvReader
from shared.dbapi import Connection
from shared.errors import StoreUnavailable
from shared.health import Metrics
from shared.jobs import JobSpec
from shared.messages import LeadsEnriched, LeadsFailed, ResultLead
from shared.store import Store
from tests.helpers import wait_until
from tests.sse import Sse, parse_sse, read_sse

T = TypeVar("T")

ACME = {"Authorization": "Bearer acme-key-0001"}
GLOBEX = {"Authorization": "Bearer globex-key-0001"}
FAST = StreamSettings(poll_interval_s=0.02, heartbeat_s=60.0, page_size=3)


async def make_client(
    store: Store, tmp_path: Path, settings: StreamSettings = FAST
) -> TestClient[web.Request, web.Application]:
    env = {
        "LEADFLOW_API_KEYS": "acme:acme-key-0001,globex:globex-key-0001",
        "LEADFLOW_DATA_DIR": str(tmp_path),
    }
    app = web.Application(middlewares=[problem_middleware, auth_middleware])
    app[SETTINGS] = load_settings(EnvReader(env))
    app[STORE] = store
    app[METRICS] = Metrics()
    setup_auth(app)
    setup_events(app, settings)
    add_routes(app, only={"streamJobEvents"})
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(
    store: Store, tmp_path: Path
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = await make_client(store, tmp_path)
    yield client
    await client.close()


def add_job(conn: Connection, job_id: str, total: int, tenant: str = "acme") -> None:
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, spec)"
        " VALUES (?, ?, 'enrich', 'queued', 'normal', ?, 'now', ?)",
        (job_id, tenant, total, msgspec.json.encode(JobSpec())),
    )


async def finish(store: Store, job_id: str, *ids: str, failed: bool = False) -> None:
    leads = [
        ResultLead(
            id=i,
            full_name=f"Lead {i}",
            status="failed" if failed else "enriched",
            error="providers unavailable" if failed else None,
        )
        for i in ids
    ]
    event = (
        LeadsFailed(job_id=job_id, tenant="acme", leads=leads)
        if failed
        else LeadsEnriched(job_id=job_id, tenant="acme", leads=leads)
    )
    await store.transaction(lambda c: record_events(c, [event]))


async def collect(
    client: TestClient[web.Request, web.Application],
    job_id: str,
    headers: dict[str, str] | None = None,
) -> list[Sse]:
    async with client.get(f"/v1/jobs/{job_id}/events", headers=headers or ACME) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        async with asyncio.timeout(10):
            return [e async for e in read_sse(response) if e.event != "message"]


def lead_ids(events: list[Sse]) -> list[str]:
    return [e.json()["id"] for e in events if e.event == "lead"]


def test_sse_event_keeps_multiline_data_valid() -> None:
    assert sse_event("lead", b'{"a":1}', 7) == b'event: lead\nid: 7\ndata: {"a":1}\n\n'
    assert sse_event("x", b"one\ntwo", 0) == b"event: x\nid: 0\ndata: one\ndata: two\n\n"


async def test_needs_a_key_and_hides_other_tenants_jobs(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 1))
    async with client.get("/v1/jobs/j1/events") as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
    async with client.get("/v1/jobs/j1/events", headers=GLOBEX) as response:
        assert response.status == 404
        assert (await response.json(content_type=None))["detail"] == "no job 'j1'"
    async with client.get("/v1/jobs/nope/events", headers=ACME) as response:
        assert response.status == 404


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "١٢", "9" * 20])
async def test_refuses_a_malformed_last_event_id(
    store: Store, client: TestClient[web.Request, web.Application], value: str
) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 1))
    async with client.get(
        "/v1/jobs/j1/events", headers={**ACME, "Last-Event-ID": value}
    ) as response:
        assert response.status == 400
        problem = await response.json(content_type=None)
        assert problem["errors"][0]["field"] == "Last-Event-ID"


async def test_finished_job_replays_everything_then_ends_with_its_state(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    # Seven leads with a page of three: the terminal state must wait for the last page.
    await store.transaction(lambda c: add_job(c, "j1", 7))
    await finish(store, "j1", "a", "b", "c", "d", "e")
    await finish(store, "j1", "f", "g", failed=True)

    events = await collect(client, "j1")

    assert lead_ids(events) == ["a", "b", "c", "d", "e", "f", "g"]
    assert events[-1].event == "state"
    assert events[-1].json() == {
        "job_id": "j1",
        "state": "completed",
        "error": None,
        "started_at": events[-1].json()["started_at"],
        "finished_at": events[-1].json()["finished_at"],
    }
    assert [e.event for e in events].count("state") == 1
    lead_events = [e for e in events if e.event == "lead"]
    seqs = [int(e.id or "") for e in lead_events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 7
    assert events[-1].id == str(seqs[-1])
    progress = [e.json() for e in events if e.event == "progress"]
    assert progress[-1]["progress"]["percent"] == 100.0
    assert progress[-1]["destinations"] == []
    failed = lead_events[-1].json()
    assert failed["status"] == "failed"
    assert failed["full_name"] == "Lead g"
    assert failed["error"] == "providers unavailable"


async def test_resumes_after_last_event_id(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 5))
    await finish(store, "j1", "a", "b", "c", "d", "e")
    first = await collect(client, "j1")
    seq_of = {e.json()["id"]: e.id for e in first if e.event == "lead"}

    resumed = await collect(client, "j1", {**ACME, "Last-Event-ID": str(seq_of["b"])})

    assert lead_ids(resumed) == ["c", "d", "e"]
    assert [e.event for e in resumed if e.event != "lead"] == ["progress", "state"]
    at_end = await collect(client, "j1", {**ACME, "Last-Event-ID": str(seq_of["e"])})
    assert [e.event for e in at_end] == ["progress", "state"]
    assert {e.id for e in at_end} == {seq_of["e"]}


async def test_streams_leads_and_progress_as_the_router_writes_them(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 4))
    async with client.get("/v1/jobs/j1/events", headers=ACME) as response:
        events = read_sse(response)
        seen: list[Sse] = []

        async def until(kind: str) -> Sse:
            async with asyncio.timeout(5):
                async for event in events:
                    seen.append(event)
                    if event.event == kind:
                        return event
            raise AssertionError(f"stream ended before a {kind} event: {seen}")

        state = await until("state")
        assert state.json()["state"] == "queued"
        assert state.id == "0"
        await finish(store, "j1", "a", "b")
        await until("lead")
        progress = await until("progress")
        assert progress.json()["progress"]["done"] == 2
        assert (await until("state")).json()["state"] == "running"
        await finish(store, "j1", "c", "d")
        final = await until("state")
        assert final.json()["state"] == "completed"
        assert [e async for e in events] == []  # the stream ended
    assert lead_ids(seen) == ["a", "b", "c", "d"]
    percents = [e.json()["progress"]["percent"] for e in seen if e.event == "progress"]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0


async def test_idle_stream_gets_heartbeats(store: Store, tmp_path: Path) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 1))
    client = await make_client(
        store, tmp_path, StreamSettings(poll_interval_s=0.02, heartbeat_s=0.1)
    )
    try:
        async with client.get("/v1/jobs/j1/events", headers=ACME) as response:
            events = read_sse(response)
            async with asyncio.timeout(5):
                first = await anext(events)
                assert first.retry == 2000
                kinds = [(await anext(events)).event for _ in range(4)]
    finally:
        await client.close()
    assert kinds == ["progress", "state", "comment", "comment"]


async def test_shutdown_ends_open_streams(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 1))
    metrics = client.app[METRICS] if client.app is not None else None
    assert metrics is not None
    async with client.get("/v1/jobs/j1/events", headers=ACME) as response:
        events = read_sse(response)
        async with asyncio.timeout(5):
            while (await anext(events)).event != "state":
                pass
            assert metrics.registry.get_sample_value("leadflow_gateway_event_streams") == 1
            await client.server.close()
            rest = [e async for e in events]
    # No terminal state: the client is expected to reconnect.
    assert rest == []
    assert metrics.registry.get_sample_value("leadflow_gateway_event_streams") == 0


async def test_leads_false_sends_only_progress_and_state(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 4))
    await finish(store, "j1", "a", "b", "c", "d")

    async with client.get("/v1/jobs/j1/events?leads=false", headers=ACME) as response:
        async with asyncio.timeout(10):
            events = [e async for e in read_sse(response) if e.event != "message"]
    async with client.get("/v1/jobs/j1/events?leads=some", headers=ACME) as response:
        assert response.status == 422

    assert [e.event for e in events] == ["progress", "state"]
    assert events[0].json()["progress"]["percent"] == 100.0
    assert events[1].json()["state"] == "completed"
    assert {e.id for e in events} == {"0"}


# ---- one poller per job, slow clients -------------------------------------------------


class CountingStore(Store):
    """Counts the reads run on the store thread, by the function read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: Counter[str] = Counter()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        self.reads[getattr(fn, "func", fn).__name__] += 1
        return await super().run(fn)

    @property
    def job_reads(self) -> int:
        return self.reads["read_snapshot"] + self.reads["read_tail"]


@pytest.fixture
async def counting(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(tmp_path / "leadflow.db")
    await store.open()
    yield store
    await store.close()


@dataclass
class Reader:
    """One open stream, read as far as a test needs."""

    events: AsyncIterator[Sse]
    seen: list[Sse] = field(default_factory=list)

    async def until(self, wanted: Callable[[Sse], bool]) -> Sse:
        async with asyncio.timeout(10):
            async for event in self.events:
                self.seen.append(event)
                if wanted(event):
                    return event
        raise AssertionError(f"the stream ended first: {self.seen}")


def is_state(state: str | None = None) -> Callable[[Sse], bool]:
    return lambda e: e.event == "state" and state in (None, e.json()["state"])


def gauge(client: TestClient[web.Request, web.Application], name: str) -> float | None:
    assert client.app is not None
    return client.app[METRICS].registry.get_sample_value(name)


async def test_one_poller_reads_the_store_for_every_stream_of_a_job(
    counting: CountingStore, tmp_path: Path
) -> None:
    await counting.transaction(lambda c: add_job(c, "j1", 9))
    client = await make_client(counting, tmp_path, replace(FAST, page_size=50))
    assert client.app is not None
    streams = client.app[STREAMS]
    try:
        async with AsyncExitStack() as opened:
            readers = []
            for _ in range(5):
                response = await opened.enter_async_context(
                    client.get("/v1/jobs/j1/events", headers=ACME)
                )
                readers.append(Reader(read_sse(response)))
            for reader in readers:
                await reader.until(is_state("queued"))
            assert list(streams.hubs) == [("acme", "j1")]
            assert gauge(client, "leadflow_gateway_event_pollers") == 1
            assert gauge(client, "leadflow_gateway_event_streams") == 5
            hub = streams.hubs[("acme", "j1")]
            reads, polls = counting.job_reads, hub.started

            for batch in (("a", "b", "c"), ("d", "e", "f"), ("g", "h", "i")):
                await finish(counting, "j1", *batch)
                for reader in readers:
                    await reader.until(is_lead(batch[-1]))
            for reader in readers:
                await reader.until(is_state("completed"))

            # Every store read while five streams followed the job was the hub's poll.
            assert hub.started - polls >= 3
            assert counting.job_reads - reads == hub.started - polls
            for reader in readers:
                assert lead_ids(reader.seen) == list("abcdefghi")

        async def all_closed() -> bool:
            return not gauge(client, "leadflow_gateway_event_streams") and not streams.hubs

        await wait_until(all_closed, timeout_s=5, interval_s=0.01, what="streams closed")
        assert gauge(client, "leadflow_gateway_event_pollers") == 0
    finally:
        await client.close()


def is_lead(lead_id: str) -> Callable[[Sse], bool]:
    return lambda e: e.event == "lead" and e.json()["id"] == lead_id


class Sink:
    """Where an EventWriter writes; with a gate, every write after the first `free` waits."""

    def __init__(self, gate: asyncio.Event | None = None, free: int = 2) -> None:
        self.raw = bytearray()
        self.gate = gate
        self.free = free
        self.writes = 0
        self.blocked = asyncio.Event()

    async def __call__(self, data: bytes) -> None:
        self.writes += 1
        if self.gate is not None and self.writes > self.free:
            self.blocked.set()
            await self.gate.wait()
        self.raw += data

    def events(self) -> list[Sse]:
        return parse_sse(bytes(self.raw))


async def open_follower(
    streams: Streams, sink: Sink, job_id: str = "j1", tenant: str = "acme"
) -> asyncio.Task[str]:
    first = await read_first(streams, tenant, job_id, 0, True)
    assert first is not None
    ticket = streams.admit(tenant)
    writer = EventWriter(sink, lambda: True, 0, streams.settings.write_timeout_s)

    async def run() -> str:
        try:
            return await follow(streams, ticket, job_id, first, writer, wants_leads=True)
        finally:
            streams.release(ticket)

    return asyncio.create_task(run())


SMALL_BUFFER = StreamSettings(poll_interval_s=0.02, heartbeat_s=60.0, page_size=3, buffer_leads=6)


async def test_a_slow_stream_holds_up_neither_the_poller_nor_other_streams(
    counting: CountingStore,
) -> None:
    streams = Streams(SMALL_BUFFER, counting, CollectorRegistry())
    await counting.transaction(lambda c: add_job(c, "j1", 30))
    gate = asyncio.Event()
    fast, slow = [Sink(), Sink()], Sink(gate)
    tasks = [await open_follower(streams, sink) for sink in (*fast, slow)]
    ids = [f"lead-{n:02}" for n in range(30)]

    for start in range(0, 30, 3):
        await finish(counting, "j1", *ids[start : start + 3])
    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(*tasks[:2])
        await slow.blocked.wait()

    assert outcomes == ["terminal", "terminal"]
    assert not tasks[2].done(), "the slow stream is still stuck in its write"
    for sink in fast:
        assert lead_ids(sink.events()) == ids
    reads = counting.reads["read_snapshot"]
    # 30 leads went by a buffer of 6: the slow stream resyncs from the store.
    gate.set()
    async with asyncio.timeout(10):
        assert await tasks[2] == "terminal"
    assert lead_ids(slow.events()) == ids
    assert counting.reads["read_snapshot"] > reads
    assert slow.events()[-1].json()["state"] == "completed"
    await streams.wait_stopped()


async def test_a_client_that_takes_nothing_is_disconnected(counting: CountingStore) -> None:
    streams = Streams(replace(SMALL_BUFFER, write_timeout_s=0.2), counting, CollectorRegistry())
    await counting.transaction(lambda c: add_job(c, "j1", 3))
    stuck, healthy = Sink(asyncio.Event()), Sink()
    stuck_task = await open_follower(streams, stuck)
    healthy_task = await open_follower(streams, healthy)

    await finish(counting, "j1", "a", "b", "c")

    async with asyncio.timeout(10):
        assert await stuck_task == "slow_client"
        assert await healthy_task == "terminal"
    assert lead_ids(healthy.events()) == ["a", "b", "c"]
    await streams.wait_stopped()


# ---- caps and lifetime ----------------------------------------------------------------


async def test_caps_on_open_streams_answer_429_per_tenant_and_in_total(
    store: Store, tmp_path: Path
) -> None:

    def two_jobs(conn: Connection) -> None:
        add_job(conn, "a1", 1)
        add_job(conn, "g1", 1, "globex")

    await store.transaction(two_jobs)
    limits = StreamLimits(max_streams=3, max_streams_per_tenant=2, max_lifetime_s=60.0)
    client = await make_client(store, tmp_path, replace(FAST, limits=limits))
    try:
        async with AsyncExitStack() as opened:

            async def open_stream(job_id: str, headers: dict[str, str]) -> Any:
                response = await opened.enter_async_context(
                    client.get(f"/v1/jobs/{job_id}/events", headers=headers)
                )
                if response.status == 200:
                    await Reader(read_sse(response)).until(is_state())
                return response

            first = await open_stream("a1", ACME)
            await open_stream("a1", ACME)
            refused = await open_stream("a1", ACME)
            assert refused.status == 429
            assert refused.content_type == "application/problem+json"
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            problem = await refused.json(content_type=None)
            assert problem["type"].endswith("/too-many-streams")
            assert "LEADFLOW_SSE_MAX_STREAMS_PER_TENANT" in problem["detail"]

            assert (await open_stream("g1", GLOBEX)).status == 200  # another tenant's slot
            full = await open_stream("g1", GLOBEX)
            assert full.status == 429
            assert (
                "LEADFLOW_SSE_MAX_STREAMS allows" in (await full.json(content_type=None))["detail"]
            )
            assert gauge(client, "leadflow_gateway_event_streams") == 3

            first.close()  # a slot frees when a stream ends

            async def one_closed() -> bool:
                return gauge(client, "leadflow_gateway_event_streams") == 2

            await wait_until(one_closed, timeout_s=5, interval_s=0.01, what="a slot freed")
            assert (await open_stream("a1", ACME)).status == 200
        assert client.app is not None
        registry = client.app[METRICS].registry
        for cap in ("tenant", "total"):
            refused = registry.get_sample_value(
                "leadflow_gateway_event_streams_refused_total", {"cap": cap}
            )
            assert refused == 1, cap
    finally:
        await client.close()


async def test_streams_end_at_their_lifetime_and_resume_losing_nothing(
    store: Store, tmp_path: Path
) -> None:
    ids = [f"lead-{n:02}" for n in range(40)]
    await store.transaction(lambda c: add_job(c, "j1", len(ids)))
    limits = StreamLimits(max_lifetime_s=0.3)
    client = await make_client(store, tmp_path, replace(FAST, page_size=4, limits=limits))

    async def router() -> None:
        # Leads keep arriving while streams end and reconnect.
        for start in range(0, len(ids), 2):
            await finish(store, "j1", *ids[start : start + 2])
            await asyncio.sleep(0.03)

    writing = asyncio.create_task(router())
    segments: list[list[Sse]] = []
    last_id: str | None = None
    try:
        async with asyncio.timeout(30):
            while (
                not segments
                or segments[-1][-1:] == []
                or not is_state("completed")(segments[-1][-1])
            ):
                headers = ACME if last_id is None else {**ACME, "Last-Event-ID": last_id}
                async with client.get("/v1/jobs/j1/events", headers=headers) as response:
                    assert response.status == 200
                    segment = [e async for e in read_sse(response)]
                assert segment[0].retry == FAST.retry_ms, "every stream starts with a retry hint"
                segment = [e for e in segment if e.event not in ("message", "comment")]
                segments.append(segment)
                last_id = next((e.id for e in reversed(segment) if e.id is not None), last_id)
        await writing
    finally:
        writing.cancel()
        await client.close()

    ended_by_lifetime = [s for s in segments[:-1] if not any(is_state("completed")(e) for e in s)]
    assert len(ended_by_lifetime) >= 2, "streams should have been cut and resumed"
    sent = [lead for segment in segments for lead in lead_ids(segment)]
    assert sent == ids, "every lead exactly once, in order, across the reconnections"


async def test_a_stream_never_takes_hub_state_older_than_its_own_read(store: Store) -> None:
    """A hub polled before a stream's own read must not move that stream's progress back."""
    settings = replace(FAST, limits=StreamLimits(max_lifetime_s=0.3))
    streams = Streams(settings, store, CollectorRegistry())
    await store.transaction(lambda c: add_job(c, "j1", 6))
    hub = JobHub(streams, "acme", "j1")  # not started: its polls are played by hand
    hub.started = 1
    older = await read_first(streams, "acme", "j1", 0, True)
    assert older is not None
    hub.publish(older, 1)
    await finish(store, "j1", "a", "b", "c")
    newer = await read_first(streams, "acme", "j1", 0, True)
    assert newer is not None
    sink = Sink()
    writer = EventWriter(sink, lambda: True, 0, settings.write_timeout_s)
    follower = Follower(streams, hub, writer, streams.admit("acme"), wants_leads=True)

    async with asyncio.timeout(5):
        assert await follower.run(newer) == "lifetime"

    done = [e.json()["progress"]["done"] for e in sink.events() if e.event == "progress"]
    assert done == [3]


class FlakyStore(CountingStore):
    """Fails job reads with `failure` while it is set."""

    failure: Exception | None = None
    failed = 0

    async def run(self, fn: Callable[[Connection], T]) -> T:
        if self.failure is not None and getattr(fn, "func", None) is read_snapshot:
            self.failed += 1
            raise self.failure
        return await super().run(fn)


async def test_a_store_outage_is_waited_out_and_a_failed_poller_ends_its_streams(
    tmp_path: Path,
) -> None:
    store = FlakyStore(tmp_path / "leadflow.db")
    await store.open()
    streams = Streams(SMALL_BUFFER, store, CollectorRegistry())
    try:
        await store.transaction(lambda c: add_job(c, "j1", 3))
        sink = Sink()
        task = await open_follower(streams, sink)

        async def polled() -> bool:
            hub = streams.hubs.get(("acme", "j1"))
            return hub is not None and hub.version > 0

        await wait_until(polled, timeout_s=10, interval_s=0.01, what="the hub's first poll")
        store.failure = StoreUnavailable("store unavailable: database is locked")
        await finish(store, "j1", "a", "b", "c")

        async def failed_twice() -> bool:
            return store.failed >= 2

        await wait_until(failed_twice, timeout_s=10, interval_s=0.01, what="failed polls")
        assert not task.done(), "the stream waits the outage out"
        store.failure = None
        async with asyncio.timeout(10):
            assert await task == "terminal"
        assert lead_ids(sink.events()) == ["a", "b", "c"]

        await store.transaction(lambda c: add_job(c, "j2", 3))
        broken = await open_follower(streams, Sink(), "j2")
        store.failure = RuntimeError("a bug in a poll")
        async with asyncio.timeout(10):
            assert await broken == "poller_stopped"
        assert not streams.hubs
    finally:
        await streams.wait_stopped()
        await store.close()


async def test_a_late_stream_of_a_big_job_starts_at_its_newest_lead_unless_it_asks(
    store: Store, tmp_path: Path
) -> None:
    # `replay_leads` of 4 stands for the 10,000 of a real gateway.
    client = await make_client(store, tmp_path, replace(FAST, replay_leads=4))
    try:
        await store.transaction(lambda c: add_job(c, "big", 7))
        await store.transaction(lambda c: add_job(c, "small", 4))
        await finish(store, "big", "a", "b", "c", "d", "e")
        await finish(store, "small", "s1", "s2", "s3")

        async def stream_after(job_id: str, query: str, *ids: str) -> list[Sse]:
            url = f"/v1/jobs/{job_id}/events{query}"
            async with client.get(url, headers=ACME) as response:
                assert response.status == 200, await response.text()
                events: list[Sse] = []
                async with asyncio.timeout(10):
                    async for event in read_sse(response):
                        if event.event == "message":
                            continue
                        events.append(event)
                        if event.event != "state":
                            continue
                        if event.json()["state"] == "completed":
                            return events
                        if [e.event for e in events].count("state") == 1:
                            await finish(store, job_id, *ids)  # after the stream began
            raise AssertionError(f"the stream of {job_id} ended before its job: {events}")

        late = await stream_after("big", "", "f", "g")
        assert lead_ids(late) == ["f", "g"]  # not a, b, c, d, e: the job had 5 > 4
        assert late[0].event == "progress"
        assert late[0].json()["progress"]["done"] == 5
        assert int(late[0].id or "") > 0  # the newest lead's seq: a resume goes on from it

        everything = await collect(client, "big", ACME | {"Accept": "text/event-stream"})
        assert lead_ids(everything) == []  # completed, 7 > 4: nothing new to send
        async with client.get("/v1/jobs/big/events?leads=true", headers=ACME) as response:
            async with asyncio.timeout(10):
                asked = [e async for e in read_sse(response) if e.event == "lead"]
        assert [e.json()["id"] for e in asked] == ["a", "b", "c", "d", "e", "f", "g"]

        only_new = await stream_after("small", "?leads=new", "s4")
        assert lead_ids(only_new) == ["s4"]
        assert lead_ids(await collect(client, "small")) == ["s1", "s2", "s3", "s4"]
    finally:
        await client.close()
