"""Test helpers: free ports, waiting on conditions, an API client, a webhook receiver,
and broker cleanup. Waiting is always for an observable event, with a deadline."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json as json_module
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import aio_pika
import aiohttp
from aiohttp import web

from devtools.ports import free_port as free_port  # the suite's one source of ports
from devtools.stack import Stack
from shared.topology import WORK_KINDS, Topology

T = TypeVar("T")
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TERMINAL = ("completed", "failed", "cancelled", "timed_out")


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


class Started(NamedTuple):
    stack: Stack
    api: Api


StartStack = Callable[..., Awaitable[Started]]


async def start(
    make: Callable[..., Stack],
    http: aiohttp.ClientSession,
    env: dict[str, str] | None = None,
    *services: str,
) -> Started:
    """Make a stack with `make(env)`, start `services` (all when none are named) and return
    it with a client of its gateway: the first lines of most end-to-end tests."""
    stack = make(env)
    await asyncio.to_thread(stack.start, *services)
    return Started(stack, Api(stack.url("gateway"), http))


async def sandbox_config(http: aiohttp.ClientSession, stack: Stack, **knobs: Any) -> None:
    """Change the sandbox's misbehaviour knobs for the rest of the run."""
    async with http.put(f"{stack.url('sandbox')}/_sandbox/config", json=knobs) as response:
        assert response.status == 200, await response.text()


async def sandbox_stats(http: aiohttp.ClientSession, stack: Stack) -> dict[str, Any]:
    """What the sandbox was asked, and the faults it answered."""
    async with http.get(f"{stack.url('sandbox')}/_sandbox/stats") as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


class Api:
    """A thin client of the gateway's HTTP API."""

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, key: str | None = None
    ) -> None:
        self.base_url = base_url
        self.session = session
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def with_key(self, key: str | None) -> Api:
        return Api(self.base_url, self.session, key)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        extra = dict(headers or {})
        body: Any = data
        if json is not None:
            # A stream, not bytes: aiohttp warns that a large bytes body blocks the loop.
            body = io.BytesIO(json_module.dumps(json).encode())
            extra.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.base_url + path, data=body, headers={**self.headers, **extra}
        ) as response:
            if response.content_type in ("application/json", "application/problem+json"):
                return response.status, await response.json(content_type=None)
            return response.status, await response.text()

    async def submit(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        status, payload = await self.request("POST", "/v1/jobs/enrich", json=body, **kwargs)
        assert status == 202, (status, payload)
        return dict(payload)

    async def submit_scrape(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        status, payload = await self.request("POST", "/v1/jobs/scrape", json=body, **kwargs)
        assert status == 202, (status, payload)
        return dict(payload)

    async def job(self, job_id: str) -> dict[str, Any]:
        status, payload = await self.request("GET", f"/v1/jobs/{job_id}")
        assert status == 200, (status, payload)
        return dict(payload)

    async def wait_job(
        self, job_id: str, states: tuple[str, ...] = TERMINAL, timeout_s: float = 60.0
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["state"] in states else None

        return await wait_until(probe, timeout_s=timeout_s, what=f"job {job_id} in {states}")

    async def all_leads(self, job_id: str, **params: str) -> list[dict[str, Any]]:
        leads: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = "&".join(
                f"{k}={v}" for k, v in {**params, "limit": "500", "cursor": cursor}.items()
            )
            status, page = await self.request("GET", f"/v1/jobs/{job_id}/leads?{query}")
            assert status == 200, (status, page)
            leads.extend(page["leads"])
            if page["next_cursor"] is None:
                return leads
            cursor = page["next_cursor"]


async def serve_on_loopback(
    path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> tuple[web.AppRunner, int]:
    """Serve one POST route on a free loopback port; the runner (to clean up) and the port."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@dataclass
class WebhookReceiver:
    """An HTTP receiver on loopback that records every batch and can be told to fail."""

    secret: str = "whsec_" + base64.b64encode(b"test-secret-key-0123456789").decode()
    fail_with: int | None = None
    batches: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def lead_ids(self) -> set[str]:
        return {lead["id"] for batch in self.batches for lead in batch["body"]["leads"]}

    async def start(self) -> None:
        self._runner, self.port = await serve_on_loopback("/hook", self._receive)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.fail_with is not None:
            return web.Response(status=self.fail_with)
        body = await request.read()
        self.batches.append(
            {
                "id": request.headers.get("webhook-id", ""),
                "timestamp": request.headers.get("webhook-timestamp", ""),
                "signature": request.headers.get("webhook-signature", ""),
                "traceparent": request.headers.get("traceparent"),
                "raw": body,
                "body": await request.json(),
            }
        )
        return web.Response(status=204)

    def signature_valid(self, batch: dict[str, Any]) -> bool:
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{batch['id']}.{batch['timestamp']}.".encode() + batch["raw"]
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        return f"v1,{expected}" in batch["signature"].split()


async def delete_topology(prefix: str, url: str = AMQP_URL, tenants: tuple[str, ...] = ()) -> None:
    """Remove every queue and exchange a test run declared under its prefix (and the
    lanes of the tenants it used)."""
    topology = Topology(prefix)
    lanes = [
        lane
        for kind in WORK_KINDS
        for t in ("default", *tenants)
        for lane in topology.lane_specs(kind, t)
    ]
    try:
        connection = await aio_pika.connect(url)
    except (aio_pika.exceptions.AMQPError, OSError):
        return  # no broker there (a test of an unreachable one): nothing was declared
    try:
        for spec in [*topology.queues(), *lanes]:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(spec.name)
        for exchange in topology.exchanges():
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange.name)
    finally:
        await connection.close()


async def queue_counts(queue: str, url: str = AMQP_URL) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, by passive declaration."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0
    finally:
        await connection.close()
