"""Personal data is removable end to end: deleting a job removes the provider answers its
leads used from every enricher's cache, including an enricher that starts after the
deletion (its cache file still holding them, as on a machine that was down)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from devtools.samples import make_leads
from devtools.stack import ServiceProcess, Stack
from tests.helpers import Api, free_port, wait_until

pytestmark = pytest.mark.e2e
CACHE_FILE = "provider-cache.db"


@contextlib.contextmanager
def opened(path: Path | str) -> Iterator[Any]:
    """The provider cache: its SQLite file, or the PostgreSQL store it shares (a URL)."""
    if isinstance(path, str):
        with psycopg.connect(path) as pg:
            yield PgCache(pg)
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


class PgCache:
    """`?` statements on a psycopg connection (what these checks ask of the cache)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)


def fingerprints_of(path: Path | str, job_id: str) -> set[str]:
    """The cache entries recorded as used by the job."""
    with opened(path) as conn:
        rows = conn.execute("SELECT fingerprint FROM cache_jobs WHERE job_id = ?", (job_id,))
        return {row[0] for row in rows}


def answers_for(path: Path | str, fingerprints: set[str]) -> int:
    """How many provider answers the cache holds for these entries."""
    with opened(path) as conn:
        rows = conn.execute("SELECT fingerprint FROM provider_answers").fetchall()
    return sum(1 for row in rows if row[0] in fingerprints)


def copy_database(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with opened(source) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


async def test_deleting_a_job_removes_its_cache_entries_everywhere(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    stack = stack_factory()
    await asyncio.to_thread(stack.start)
    api = Api(stack.url("gateway"), http)
    job = await api.submit({"leads": make_leads(30, seed=901)})
    await api.wait_job(job["job_id"], timeout_s=120)
    store_url = stack.env.get("LEADFLOW_STORE_URL", "")
    on_postgres = store_url.startswith("postgresql://")
    # On PostgreSQL the cache is in the shared store: one place for every enricher.
    cache: Path | str = store_url if on_postgres else stack.data_dir / CACHE_FILE
    used = fingerprints_of(cache, job["job_id"])
    assert used, "the job's provider answers were not cached"
    assert answers_for(cache, used) >= len(used)
    # An enricher elsewhere, down during the deletion, holds the same entries.
    later_dir = tmp_path / "later-enricher"
    if not on_postgres:
        assert isinstance(cache, Path)
        copy_database(cache, later_dir / CACHE_FILE)

    status, _ = await api.request("DELETE", f"/v1/jobs/{job['job_id']}")
    assert status == 204

    async def forgotten(path: Path | str) -> bool:
        return not fingerprints_of(path, job["job_id"]) and answers_for(path, used) == 0

    await wait_until(lambda: forgotten(cache), timeout_s=60, what="the running enricher forgot")
    if on_postgres:
        return  # no cache of its own elsewhere to forget

    later = ServiceProcess(
        "enricher",
        port := free_port(),
        {**stack.env, "LEADFLOW_HTTP_PORT": str(port), "LEADFLOW_DATA_DIR": str(later_dir)},
        later_dir / "log" / "enricher.log",
    )
    later.start()
    try:
        await asyncio.to_thread(later.wait_ready)
        await wait_until(
            lambda: forgotten(later_dir / CACHE_FILE),
            timeout_s=60,
            what="the enricher started after the deletion forgot too",
        )
    finally:
        later.stop(timeout_s=10)
