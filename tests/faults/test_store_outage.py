"""The status store unavailable for 70 s mid-job (another process holds its write lock,
as a long backup would): the router waits it out, shows not ready meanwhile, spends no
attempt and parks nothing, and the job completes with every lead once, in time."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.broker_node import BrokerNode
from tests.faults.invariants import assert_invariants
from tests.helpers import Api, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

OUTAGE_S = 70.0  # longer than the store's 30 s busy timeout, twice over
# Shorter than the outage: without moving deadlines by the outage, the job would time
# out although its work was done and only its recording waited.
TIMEOUT_S = 60


def write_lock_holder(stack: Stack) -> Any:
    """A connection to the stack's store that will hold its writers off."""
    url = stack.env.get("LEADFLOW_STORE_URL", "")
    if url.startswith("postgresql://"):
        return PgHolder(psycopg.connect(url, autocommit=True))
    return SqliteHolder(
        sqlite3.connect(
            stack.data_dir / "leadflow.db",
            isolation_level=None,
            timeout=LOCK_TRY_S,
            check_same_thread=False,
        )
    )


LOCK_TRY_S = 1.0


class SqliteHolder:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def try_lock(self) -> bool:
        """Take the database's write lock, as a long backup would; False if busy."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        return True

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


class PgHolder:
    """PostgreSQL has no database-wide write lock: every table of the stack's schema locked
    against writes, as SQLite's lock is (readers still read, and the router's reads
    succeed all through the outage: they must not end the one it measures)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def try_lock(self) -> bool:
        tables = [
            row[0]
            for row in self.conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        self.conn.execute("BEGIN")
        self.conn.execute(f"SET LOCAL lock_timeout = '{int(LOCK_TRY_S * 1000)}ms'")
        try:
            self.conn.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
        except psycopg.errors.LockNotAvailable:
            self.conn.execute("ROLLBACK")
            return False
        return True

    def release(self) -> None:
        self.conn.execute("ROLLBACK")  # outside a transaction only a warning

    def close(self) -> None:
        self.conn.close()


async def router_readiness(http: aiohttp.ClientSession, stack: Stack) -> tuple[int, str]:
    async with http.get(stack.url("router") + "/readyz") as response:
        return response.status, await response.text()


async def test_a_store_locked_for_70s_mid_job_loses_no_lead(
    fault_stack: Callable[..., Stack], broker_node: BrokerNode, http: aiohttp.ClientSession
) -> None:
    # Slow providers, one task at a time: the job is still running when the lock comes.
    stack = fault_stack({"LEADFLOW_SANDBOX_LATENCY_MS": "250", "LEADFLOW_ENRICH_PREFETCH": "1"})
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    leads = make_leads(500, seed=1001)
    job = await api.submit(
        {
            "leads": leads,
            "timeout_s": TIMEOUT_S,
            "destinations": [{"type": "csv", "name": "outage"}],
        }
    )
    job_id = job["job_id"]

    async def some_recorded() -> bool:
        return bool((await api.job(job_id))["progress"]["done"] >= 25)

    await wait_until(some_recorded, timeout_s=60, what="the first leads recorded")
    events_queue = f"{stack.env['LEADFLOW_BROKER_PREFIX']}.router.events"

    async def events_waiting() -> bool:
        counts = (await asyncio.to_thread(broker_node.queues, stack.env["LEADFLOW_BROKER_PREFIX"]))[
            events_queue
        ]
        return counts["messages_ready"] + counts["messages_unacknowledged"] > 0

    # The enricher books each provider call's credits in the store (shared/credits.py), so
    # during the outage it waits too: the router is frozen a moment before the lock, so
    # that events are waiting for it when the store goes.
    router = stack.services["router"].proc
    assert router is not None
    os.kill(router.pid, signal.SIGSTOP)

    holder = write_lock_holder(stack)
    try:
        await wait_until(events_waiting, timeout_s=30, what="events waiting for the router")
        # The router may have been frozen inside a transaction: then the lock cannot be
        # had, and it runs a moment to finish it before the next try.
        for _ in range(50):
            if await asyncio.to_thread(holder.try_lock):
                break
            os.kill(router.pid, signal.SIGCONT)
            await asyncio.sleep(0.02)
            os.kill(router.pid, signal.SIGSTOP)
        else:
            raise AssertionError("the store's write lock could not be had")
        locked_at = time.monotonic()
        os.kill(router.pid, signal.SIGCONT)
        done_at_lock = (await api.job(job_id))["progress"]["done"]

        async def router_not_ready() -> tuple[int, str] | None:
            status, body = await router_readiness(http, stack)
            return (status, body) if status == 503 else None

        status, body = await wait_until(
            router_not_ready, timeout_s=OUTAGE_S - 10, what="router /readyz 503"
        )
        assert "store" in body, body
        router_log = stack.data_dir / "log" / "router.log"

        async def router_holding() -> bool:
            return "consumer.store_unavailable_holding" in router_log.read_text()

        # Its batch failed on the lock and is held, not retried through the tiers.
        await wait_until(router_holding, timeout_s=OUTAGE_S - 20, what="the router holding")
        # Reads go on (WAL): the API still answers, and nothing is recorded meanwhile.
        assert (await api.job(job_id))["progress"]["done"] == done_at_lock
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - locked_at)))
        assert (await api.job(job_id))["state"] == "running"
    finally:
        os.kill(router.pid, signal.SIGCONT)  # a failure before the lock must not leave it frozen
        await asyncio.to_thread(holder.release)
        holder.close()

    final = await assert_invariants(
        api,
        stack,
        broker_node,
        job_id,
        {lead["id"] for lead in leads},
        csv_name="outage",
        timeout_s=120,
    )
    assert final["error"] is None

    async def router_ready() -> bool:
        return (await router_readiness(http, stack))[0] == 200

    await wait_until(router_ready, timeout_s=60, what="router ready again")
    status, letters = await api.request("GET", f"/v1/dead-letters?job_id={job_id}")
    assert status == 200, letters
    assert letters["dead_letters"] == [], "no event spent its attempts on the outage"
