"""Webhook delivery: a pool with no head-of-line blocking, claims fair between tenants,
per-receiver and per-tenant limits, circuits, and `410 Gone`; on a real SQLite store and
receivers on loopback (no broker)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from services.router.config import WebhookSettings, load_webhook_settings
from services.router.destinations.webhook import (
    GONE_REASON,
    Batch,
    Circuits,
    ClaimRules,
    Gate,
    Limits,
    WebhookDispatcher,
    choose,
    claim_due,
    receiver_of,
)
from services.router.ledger import cut_webhook_batches, record_events
from shared.config import EnvReader, load_common
from shared.dbapi import Connection
from shared.health import Metrics
from shared.jobs import JobSpec, WebhookDestination
from shared.messages import LeadsEnriched, ResultLead
from shared.netguard import NetGuard
from shared.store import Store
from tests.helpers import free_port, wait_until


class Receiver:
    """A loopback receiver: answers `status`, or hangs until released."""

    def __init__(self, status: int = 204, *, hang: bool = False) -> None:
        self.status = status
        self.hang = hang
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        self.release = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), dict(request.headers), await request.read()))
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status)


def settings(**env: str) -> WebhookSettings:
    variables = {"LEADFLOW_WEBHOOK_BACKOFF_BASE_S": "0.05", "LEADFLOW_WEBHOOK_BACKOFF_MAX_S": "0.1"}
    variables.update({f"LEADFLOW_WEBHOOK_{k.upper()}": v for k, v in env.items()})
    reader = EnvReader(variables)
    return load_webhook_settings(reader, load_common("router", reader))


def add_job(conn: Connection, job_id: str, tenant: str, urls: list[str], leads: int) -> None:
    spec = JobSpec(destinations=[WebhookDestination(url=u, batch_size=10) for u in urls])
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, spec)"
        " VALUES (?, ?, 'enrich', 'running', 'normal', ?, 'now', ?)",
        (job_id, tenant, leads + 1000, msgspec.json.encode(spec)),  # never completes
    )
    conn.executemany(
        "INSERT INTO destinations (job_id, idx, type) VALUES (?, ?, 'webhook')",
        [(job_id, idx) for idx in range(len(urls))],
    )
    add_leads(conn, job_id, tenant, 0, leads)


def add_leads(conn: Connection, job_id: str, tenant: str, first: int, n: int) -> None:
    ids = [f"{job_id}-{i}" for i in range(first, first + n)]
    record_events(
        conn, [LeadsEnriched(job_id=job_id, tenant=tenant, leads=[ResultLead(id=i) for i in ids])]
    )
    cut_webhook_batches(conn, job_id)


async def destination(store: Store, job_id: str, idx: int = 0) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        row = conn.execute(
            "SELECT delivered, failed, last_error, disabled_reason FROM destinations"
            " WHERE job_id = ? AND idx = ?",
            (job_id, idx),
        ).fetchone()
        return dict(row)

    return await store.run(read)


async def running(dispatcher: WebhookDispatcher) -> AsyncIterator[None]:
    task = asyncio.create_task(dispatcher.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def dispatcher_for(store: Store, session: aiohttp.ClientSession, **env: str) -> WebhookDispatcher:
    return WebhookDispatcher(store, session, NetGuard(["127.0.0.0/8"]), settings(**env), Metrics())


async def until(probe: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 10) -> Any:
    return await wait_until(probe, timeout_s=timeout_s, interval_s=0.02, what=what)


async def test_a_hanging_receiver_does_not_delay_another_tenants_batch(store: Store) -> None:
    """The old dispatcher awaited a claimed round together: the healthy batch, claimed
    while the hanging one was in flight, waited for the hanging one's timeout (30 s)."""
    async with (
        Receiver(hang=True) as hanging,
        Receiver() as healthy,
        aiohttp.ClientSession() as session,
    ):
        dispatcher = dispatcher_for(store, session, timeout_s="30")
        await store.transaction(lambda c: add_job(c, "slow", "acme", [hanging.url], 10))
        async for _ in running(dispatcher):

            async def hanging_posted() -> bool:
                return bool(hanging.requests)

            await until(hanging_posted, "the hanging POST")
            await store.transaction(lambda c: add_job(c, "fast", "globex", [healthy.url], 10))
            dispatcher.nudge()

            async def fast_delivered() -> bool:
                return bool((await destination(store, "fast"))["delivered"] == 10)

            await until(fast_delivered, "the other tenant's batch delivered", 10)
            assert len(healthy.requests) == 1
            assert dispatcher.in_flight == 1  # the hanging POST is still waiting
            assert (await destination(store, "slow"))["delivered"] == 0


def batch(tenant: str, receiver: str, no: int) -> Batch:
    return Batch(
        job_id=f"{tenant}-job",
        dest_idx=0,
        batch_no=no,
        webhook_id=f"msg_{tenant}_{no}",
        first_seq=no,
        last_seq=no,
        size=1,
        attempts=0,
        created_at=0.0,
        tenant=tenant,
        receiver=receiver,
    )


def tenants_of(chosen: list[Batch]) -> list[str]:
    return [b.tenant for b in chosen]


def test_claims_go_round_robin_between_tenants() -> None:
    candidates = [
        *(batch("a", f"r{i}", i) for i in range(5)),
        *(batch("b", f"s{i}", i) for i in range(5)),
        batch("c", "t", 0),
    ]
    chosen, _ = choose(candidates, 6, ClaimRules(), Counter(), Counter(), 0.0)
    assert tenants_of(chosen) == ["a", "b", "c", "a", "b", "a"]
    # The next claim starts after the tenant served last.
    chosen, _ = choose(candidates, 3, ClaimRules(last_tenant="a"), Counter(), Counter(), 0.0)
    assert tenants_of(chosen) == ["b", "c", "a"]


def test_a_receiver_and_a_tenant_get_at_most_their_share() -> None:
    candidates = [
        *(batch("a", "r1", i) for i in range(6)),
        batch("a", "r2", 6),
        batch("b", "r1", 0),
    ]
    rules = ClaimRules(limits=Limits(receiver=2, tenant=100))
    chosen, _ = choose(candidates, 10, rules, Counter(), Counter(), 0.0)
    assert Counter(b.receiver for b in chosen) == {"r1": 2, "r2": 1}
    # Deliveries already in flight (leases in the store) count.
    chosen, _ = choose(candidates, 10, rules, Counter({"r1": 2}), Counter(), 0.0)
    assert [b.receiver for b in chosen] == ["r2"]
    rules = ClaimRules(limits=Limits(receiver=100, tenant=3))
    chosen, _ = choose(candidates, 10, rules, Counter(), Counter({"b": 3}), 0.0)
    assert tenants_of(chosen) == ["a", "a", "a"]


def test_a_circuit_opens_after_failures_in_a_row_and_half_opens_for_one_trial() -> None:
    circuits = Circuits(threshold=3, cooloff_s=10)
    circuits.record("r", "HTTP 500", 0.0)
    circuits.record("r", "HTTP 500", 0.0)
    circuits.record("r", None, 0.0)  # a success resets the count
    for _ in range(2):
        circuits.record("r", "timed out", 1.0)
    assert circuits.gates(1.0) == {}
    circuits.record("r", "timed out", 1.0)
    assert circuits.gates(5.0) == {"r": Gate(open_until=11.0, last_error="timed out")}
    candidates = [batch("a", "r", i) for i in range(3)] + [batch("b", "ok", 0)]
    rules = ClaimRules(gates=circuits.gates(5.0))
    chosen, blocked = choose(candidates, 10, rules, Counter(), Counter(), 5.0)
    assert [b.receiver for b in chosen] == ["ok"]
    assert [b.batch_no for b, _ in blocked] == [0, 1, 2]
    # Cool-off over: half-open, one trial, and none while a delivery to it is in flight.
    rules = ClaimRules(gates=circuits.gates(12.0))
    assert rules.gates["r"].trial
    chosen, blocked = choose(candidates, 10, rules, Counter(), Counter(), 12.0)
    assert [b.receiver for b in chosen] == ["r", "ok"]
    assert not blocked
    chosen, _ = choose(candidates, 10, rules, Counter({"r": 1}), Counter(), 12.0)
    assert [b.receiver for b in chosen] == ["ok"]
    circuits.record("r", "HTTP 502", 12.5)  # the trial failed: open again
    assert circuits.gates(13.0)["r"].open_until == pytest.approx(22.5)
    circuits.record("r", None, 23.0)  # a later trial succeeded
    assert circuits.gates(23.0) == {}


async def test_batches_behind_an_open_circuit_wait_for_the_cooloff_or_are_given_up(
    store: Store,
) -> None:
    url = "http://127.0.0.1:9/hook"
    await store.transaction(lambda c: add_job(c, "j", "acme", [url], 20))
    now = time.time() + 1
    gates = {receiver_of(url): Gate(open_until=now + 100, last_error="HTTP 503")}
    rules = ClaimRules(gates=gates)
    assert await store.transaction(lambda c: claim_due(c, now, 10, 60, rules)) == []
    assert rules.deferred == 2
    # Not due before the cool-off ends.
    assert await store.transaction(lambda c: claim_due(c, now + 99, 10, 60)) == []
    rules = ClaimRules(gates={receiver_of(url): Gate(open_until=now + 300)}, retry_window_s=0)
    assert await store.transaction(lambda c: claim_due(c, now + 101, 10, 60, rules)) == []
    assert rules.given_up == 2
    dest = await destination(store, "j")
    assert dest["failed"] == 20
    assert dest["last_error"].startswith("receiver failing, circuit open")


async def test_410_disables_the_destination_at_once_and_posts_no_more(store: Store) -> None:
    async with Receiver(410) as gone, Receiver() as fine, aiohttp.ClientSession() as session:
        dispatcher = dispatcher_for(store, session, receiver_concurrency="1")
        await store.transaction(lambda c: add_job(c, "j", "acme", [gone.url, fine.url], 30))
        async for _ in running(dispatcher):

            async def disabled() -> dict[str, Any] | None:
                dest = await destination(store, "j", 0)
                return dest if dest["failed"] == 30 else None

            dest = await until(disabled, "the 410 destination failed")
            assert dest["last_error"] == GONE_REASON
            assert dest["disabled_reason"] == GONE_REASON
            assert len(gone.requests) == 1
            # Later batches of the disabled destination fail without a request.
            await store.transaction(lambda c: add_leads(c, "j", "acme", 30, 10))
            dispatcher.nudge()

            async def all_failed() -> bool:
                return bool((await destination(store, "j", 0))["failed"] == 40)

            await until(all_failed, "the later batch failed too")

            async def others_delivered() -> bool:
                return bool((await destination(store, "j", 1))["delivered"] == 40)

            await until(others_delivered, "the other destination delivered")
            assert len(gone.requests) == 1
        state = await store.run(
            lambda c: c.execute("SELECT state FROM jobs WHERE job_id = 'j'").fetchone()[0]
        )
        assert state == "running"  # a destination never fails the job
