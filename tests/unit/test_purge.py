"""A big job's results deleted a chunk a transaction (shared/purge.py), on a real store:
every row goes, no transaction deletes more than a chunk, and another writer gets the
store between two chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

import shared.purge
from shared.dbapi import Connection
from shared.purge import delete_lead_rows, purge_lead_rows
from shared.store import Store, delete_job

LEADS = 12_000
CHUNK = 1_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "leadflow.db")
    await store.open()
    yield store
    await store.close()


def add_big_job(conn: Connection, job_id: str) -> None:
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, created_at, spec)"
        " VALUES (?, 'acme', 'enrich', 'completed', 'normal', '2026-12-01T00:00:00Z', x'7b7d')",
        (job_id,),
    )
    conn.executemany(
        "INSERT INTO leads (job_id, lead_id, status, data) VALUES (?, ?, 'enriched', x'7b7d')",
        [(job_id, f"lead-{n}") for n in range(LEADS)],
    )
    conn.executemany(
        "INSERT INTO scrape_leads (job_id, lead_id) VALUES (?, ?)",
        [(job_id, f"lead-{n}") for n in range(1500)],
    )


def count(conn: Connection, table: str, job_id: str) -> int:
    return int(
        conn.execute(f"SELECT count(*) FROM {table} WHERE job_id = ?", (job_id,)).fetchone()[0]
    )


async def test_every_row_goes_a_chunk_a_transaction_and_other_writers_get_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.transaction(lambda conn: add_big_job(conn, "job_big"))
    await store.transaction(lambda conn: add_big_job(conn, "job_other"))
    events: list[str] = []
    chunks: list[int] = []

    def chunk(conn: Connection, job_id: str, limit: int) -> int:
        deleted = delete_lead_rows(conn, job_id, limit)
        chunks.append(deleted)
        events.append("chunk")
        return deleted

    monkeypatch.setattr(shared.purge, "delete_lead_rows", chunk)

    async def other_writer() -> None:
        for n in range(5):
            await store.transaction(partial(touch_other, n=n))
            events.append("write")

    await asyncio.gather(purge_lead_rows(store, "job_big", CHUNK), other_writer())
    assert max(chunks) == CHUNK
    assert sum(chunks) == LEADS + 1500
    first, last = events.index("chunk"), len(events) - 1 - events[::-1].index("chunk")
    assert "write" in events[first:last], events

    await store.transaction(lambda conn: delete_job(conn, "job_big"))
    for table in ("leads", "scrape_leads", "jobs"):
        assert await store.run(partial(count, table=table, job_id="job_big")) == 0
        assert await store.run(partial(count, table=table, job_id="job_other")) > 0


async def test_purge_lead_rows_counts_what_it_deleted(store: Store) -> None:
    await store.transaction(lambda conn: add_big_job(conn, "job_big"))
    assert await purge_lead_rows(store, "job_big", chunk_rows=4_000) == LEADS + 1500
    assert await purge_lead_rows(store, "job_big") == 0


def touch_other(conn: Connection, n: int) -> None:
    conn.execute("UPDATE jobs SET progress_at = ? WHERE job_id = 'job_other'", (n,))
