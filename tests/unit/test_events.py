"""The job event stream against a real SQLite store and an in-process gateway app (no broker):
auth, event order and ids, resuming, paging, heartbeats and shutdown."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.auth import auth_middleware
from services.gateway.config import load_settings
from services.gateway.events import StreamSettings, setup_events, sse_event
from services.gateway.keys import METRICS, SETTINGS, STORE
from services.gateway.problems import problem_middleware
from services.router.ledger import record_events
from shared.config import EnvReader
from shared.health import Metrics
from shared.jobs import JobSpec
from shared.messages import LeadsEnriched, LeadsFailed, ResultLead
from shared.store import Store
from tests.sse import Sse, read_sse

ACME = {"Authorization": "Bearer acme-key-0001"}
GLOBEX = {"Authorization": "Bearer globex-key-0001"}
# auth.py keeps the tenant under a plain string key, which aiohttp >= 3.13 warns about on
# every authenticated request; that is the auth module's to change, not this stream's.
FAST = StreamSettings(poll_interval_s=0.02, heartbeat_s=60.0, page_size=3)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "leadflow.db")
    await store.open()
    yield store
    await store.close()


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
    setup_events(app, settings)
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


def add_job(conn: sqlite3.Connection, job_id: str, total: int, tenant: str = "acme") -> None:
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
