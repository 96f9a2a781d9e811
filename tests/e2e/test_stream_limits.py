"""Bounded event streams and failed-auth throttling against a real gateway process with tiny
caps: 429 beyond the per-tenant and total stream caps, streams cut at their lifetime and
resumed with Last-Event-ID losing nothing, one poller per job, wrong keys throttled per
client address."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import TERMINAL, Api
from tests.sse import Sse, read_sse

pytestmark = pytest.mark.e2e

KEYS = {"acme": "acme-limits-key-1", "globex": "globex-limits-key-1", "initech": "ini-limits-key-1"}
API_KEYS = ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items())
NO_READ_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=30)


async def open_stream(
    opened: AsyncExitStack, api: Api, job_id: str, last_event_id: str | None = None
) -> aiohttp.ClientResponse:
    headers = dict(api.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return await opened.enter_async_context(
        api.session.get(
            f"{api.base_url}/v1/jobs/{job_id}/events", headers=headers, timeout=NO_READ_TIMEOUT
        )
    )


async def first_state(response: aiohttp.ClientResponse) -> Sse:
    async with asyncio.timeout(30):
        async for event in read_sse(response):
            if event.event == "state":
                return event
    raise AssertionError("the stream ended before its first state")


async def test_stream_caps_lifetime_and_auth_throttle(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(
        {
            "LEADFLOW_API_KEYS": API_KEYS,
            "LEADFLOW_SSE_MAX_STREAMS": "2",
            "LEADFLOW_SSE_MAX_STREAMS_PER_TENANT": "1",
            "LEADFLOW_SSE_MAX_LIFETIME_S": "2",
            "LEADFLOW_AUTH_MAX_FAILURES": "3",
        }
    )
    stack.start("gateway")  # no enricher: jobs stay queued and their streams stay open
    apis = {tenant: Api(stack.url("gateway"), http, key) for tenant, key in KEYS.items()}
    jobs = {
        tenant: (await api.submit({"leads": make_leads(2, seed=31)}))["job_id"]
        for tenant, api in apis.items()
    }

    async with AsyncExitStack() as opened:
        acme = await open_stream(opened, apis["acme"], jobs["acme"])
        assert acme.status == 200
        assert (await first_state(acme)).json()["state"] == "queued"

        again = await open_stream(opened, apis["acme"], jobs["acme"])
        assert again.status == 429
        assert again.content_type == "application/problem+json"
        assert 1 <= int(again.headers["Retry-After"]) <= 2
        assert "LEADFLOW_SSE_MAX_STREAMS_PER_TENANT" in (await again.json())["detail"]

        globex = await open_stream(opened, apis["globex"], jobs["globex"])
        assert globex.status == 200
        full = await open_stream(opened, apis["initech"], jobs["initech"])
        assert full.status == 429
        assert "LEADFLOW_SSE_MAX_STREAMS allows" in (await full.json())["detail"]

        # The lifetime ends the stream without a terminal state; the client resumes.
        async with asyncio.timeout(30):
            rest = [event async for event in read_sse(acme)]
        assert not [e for e in rest if e.event == "state" and e.json()["state"] in TERMINAL]
        resumed = await open_stream(opened, apis["acme"], jobs["acme"], last_event_id="0")
        assert resumed.status == 200
        assert (await first_state(resumed)).json()["state"] == "queued"

    # Wrong keys from 127.0.0.1: throttled after 3, even with the right key.
    wrong = apis["acme"].with_key("acme-limits-key-WRONG")
    for _ in range(3):
        status, _problem = await wrong.request("GET", "/v1/jobs")
        assert status == 401
    async with http.get(stack.url("gateway") + "/v1/jobs", headers=apis["acme"].headers) as got:
        assert got.status == 429
        assert int(got.headers["Retry-After"]) >= 1
        assert (await got.json(content_type=None))["type"].endswith("/auth-throttled")

    # Another client address is not affected.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as other,
        other.get(stack.url("gateway") + "/v1/jobs", headers=apis["acme"].headers) as got,
    ):
        assert got.status == 200


async def read_with_resumes(api: Api, job_id: str, segments: list[list[Sse]]) -> None:
    """Read the job's stream to its terminal state, reconnecting after each cut."""
    last_id: str | None = None
    while True:
        async with AsyncExitStack() as opened:
            response = await open_stream(opened, api, job_id, last_id)
            assert response.status == 200, await response.text()
            segment = [e async for e in read_sse(response) if e.event not in ("message", "comment")]
        segments.append(segment)
        last_id = next((e.id for e in reversed(segment) if e.id is not None), last_id)
        if segment and segment[-1].event == "state" and segment[-1].json()["state"] in TERMINAL:
            return


async def test_streams_cut_by_their_lifetime_lose_no_lead_and_share_one_poller(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(
        {
            "LEADFLOW_API_KEYS": API_KEYS,
            "LEADFLOW_SANDBOX_LATENCY_MS": "200",
            "LEADFLOW_SSE_MAX_LIFETIME_S": "1",
        }
    )
    stack.start()
    api = Api(stack.url("gateway"), http, KEYS["acme"])
    leads = make_leads(1000, seed=32)
    job = await api.submit({"leads": leads})
    readers: list[list[list[Sse]]] = [[], [], []]
    pollers: list[float] = []

    async def watch_pollers() -> None:
        while True:
            async with http.get(stack.url("gateway") + "/metrics") as response:
                text = await response.text()
            pollers.extend(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("leadflow_gateway_event_pollers ")
            )
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch_pollers())
    try:
        async with asyncio.timeout(180):
            await asyncio.gather(*(read_with_resumes(api, job["job_id"], r) for r in readers))
    finally:
        watcher.cancel()

    assert pollers
    assert max(pollers) == 1, "three streams of one job, one poller"
    expected = sorted(lead["id"] for lead in leads)
    for segments in readers:
        assert len(segments) >= 2, "the lifetime should have cut the stream at least once"
        sent = [e.json()["id"] for segment in segments for e in segment if e.event == "lead"]
        assert sorted(sent) == expected, "every lead exactly once across the reconnections"
        assert segments[-1][-1].json()["state"] == "completed"
