"""The job event stream end to end: real services, the real broker, sandbox latency so a job
runs for a while; every lead once, monotonic progress, the terminal state last, resuming."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import TERMINAL, Api
from tests.sse import Sse, read_sse

pytestmark = pytest.mark.e2e

ACME_KEY = "acme-events-key-1"
GLOBEX_KEY = "globex-events-key-1"
STREAM_TIMEOUT_S = 90


@pytest.fixture
def acme(stack_factory: Callable[..., Stack], http: aiohttp.ClientSession) -> Api:
    stack = stack_factory(
        {
            "LEADFLOW_SANDBOX_LATENCY_MS": "100",
            "LEADFLOW_API_KEYS": f"acme:{ACME_KEY},globex:{GLOBEX_KEY}",
        }
    )
    stack.start()
    return Api(stack.url("gateway"), http, ACME_KEY)


@asynccontextmanager
async def events(
    api: Api, job_id: str, last_event_id: str | None = None
) -> AsyncIterator[AsyncIterator[Sse]]:
    headers = {**api.headers, "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with api.session.get(
        f"{api.base_url}/v1/jobs/{job_id}/events",
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=30),
    ) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        yield (event async for event in read_sse(response) if event.event != "message")


async def read_to_end(api: Api, job_id: str, last_event_id: str | None = None) -> list[Sse]:
    async with asyncio.timeout(STREAM_TIMEOUT_S), events(api, job_id, last_event_id) as stream:
        return [event async for event in stream]


def check_ids(stream: list[Sse], after: int = 0) -> None:
    """Lead events carry their seq; every other event the seq of the last lead before it."""
    last = after
    for event in stream:
        if event.event == "lead":
            assert int(event.id or "") > last, event
            last = int(event.id or "")
        elif event.event in ("progress", "state"):
            assert event.id == str(last), event


async def test_stream_carries_every_lead_once_and_ends_on_the_terminal_state(acme: Api) -> None:
    leads = make_leads(300, seed=21)
    job = await acme.submit({"leads": leads})

    stream = await read_to_end(acme, job["job_id"])

    kinds = Counter(event.event for event in stream)
    assert set(kinds) <= {"progress", "lead", "state", "comment"}, kinds
    progress = [event.json()["progress"] for event in stream if event.event == "progress"]
    assert progress[0]["percent"] < 100, "the stream should start while the job runs"
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
    assert [p["percent"] for p in progress] == sorted(p["percent"] for p in progress)
    last = progress[-1]
    assert {k: v for k, v in last.items() if k != "credits"} == {
        "total": 300,
        "done": 300,
        "enriched": 300,
        "failed": 0,
        "percent": 100,
    }
    # The sandbox's providers bill a credit per person matched; the stream says what was spent.
    assert last["credits"] == (await acme.job(job["job_id"]))["progress"]["credits"] > 0

    sent = [event.json() for event in stream if event.event == "lead"]
    assert Counter(lead["id"] for lead in sent) == Counter(lead["id"] for lead in leads)
    assert sent == await acme.all_leads(job["job_id"]), "lead events are the stored results"
    check_ids(stream)

    states = [event.json() for event in stream if event.event == "state"]
    assert [s["state"] for s in states if s["state"] in TERMINAL] == ["completed"]
    assert stream[-1].event == "state"
    assert stream[-1].json()["state"] == "completed"
    assert stream[-1].json()["finished_at"] is not None

    # A late client gets the whole story again, and the stream still ends.
    replay = await read_to_end(acme, job["job_id"])
    assert [e.json()["id"] for e in replay if e.event == "lead"] == [lead["id"] for lead in sent]
    assert [e.event for e in replay if e.event != "lead"] == ["progress", "state"]


async def test_reconnect_with_last_event_id_continues_after_the_last_lead(acme: Api) -> None:
    leads = make_leads(300, seed=22)
    job = await acme.submit({"leads": leads})

    first: list[Sse] = []
    async with asyncio.timeout(STREAM_TIMEOUT_S), events(acme, job["job_id"]) as stream:
        async for event in stream:
            first.append(event)
            if sum(e.event == "lead" for e in first) >= 100:
                break
    resume_at = first[-1].id
    assert resume_at is not None
    assert first[-1].event == "lead"

    rest = await read_to_end(acme, job["job_id"], resume_at)

    first_ids = [e.json()["id"] for e in first if e.event == "lead"]
    rest_ids = [e.json()["id"] for e in rest if e.event == "lead"]
    assert len(first_ids) == 100
    assert not set(first_ids) & set(rest_ids)
    assert sorted(first_ids + rest_ids) == sorted(lead["id"] for lead in leads)
    assert "progress" in {e.event for e in rest}
    check_ids(rest, after=int(resume_at))
    assert rest[-1].event == "state"
    assert rest[-1].json()["state"] == "completed"


async def test_events_are_the_tenants_own(acme: Api) -> None:
    job = await acme.submit({"leads": make_leads(5, seed=23)})
    path = f"/v1/jobs/{job['job_id']}/events"

    status, problem = await acme.with_key(None).request("GET", path)
    assert status == 401, problem
    status, problem = await acme.with_key(GLOBEX_KEY).request("GET", path)
    assert status == 404, problem
    assert problem["detail"] == f"no job {job['job_id']!r}"
    status, problem = await acme.request("GET", path, headers={"Last-Event-ID": "x"})
    assert status == 400, problem
    stream = await read_to_end(acme, job["job_id"])
    assert stream[-1].json()["state"] in TERMINAL


async def test_stopping_the_gateway_ends_open_streams_without_a_terminal_state(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_API_KEYS": f"acme:{ACME_KEY}"})
    stack.start("gateway")  # no enricher: the job stays queued and its stream stays open
    api = Api(stack.url("gateway"), http, ACME_KEY)
    job = await api.submit({"leads": make_leads(3, seed=24)})

    seen: list[Sse] = []
    async with asyncio.timeout(30), events(api, job["job_id"]) as stream:
        async for event in stream:
            seen.append(event)
            if event.event == "state":
                break
        started = time.monotonic()
        exit_code = await asyncio.to_thread(stack.services["gateway"].stop)
        rest = [event async for event in stream]

    assert seen[-1].json()["state"] == "queued"
    assert exit_code == 0
    assert time.monotonic() - started < 5, "an open stream held up the stop"
    assert all(event.event == "comment" for event in rest), rest
