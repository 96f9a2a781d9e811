"""The provider cache forgets: expired rows are purged in chunks, and a deleted job's
entries go (every provider's answer, also when another job used them), on the real
SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.enricher import cache as cache_module
from services.enricher.cache import PURGE_CHUNK, ProviderCache, fingerprint
from shared.dbapi import Connection
from shared.messages import JobDeleted, ProviderAnswer
from shared.supervise import Backoff, supervise
from tests.helpers import wait_until

T = TypeVar("T")
TTL_S = 3600.0


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[ProviderCache]:
    cache = ProviderCache(tmp_path / "cache.db", ttl_s=TTL_S)
    await cache.open()
    yield cache
    await cache.close()


def key(person: str) -> str:
    return fingerprint({"full_name": person, "company": "Engines"})


def answer(provider: str) -> ProviderAnswer:
    return ProviderAnswer(provider=provider, found={"email": "ada@engines.example"})


async def put(cache: ProviderCache, job_id: str, provider: str, *people: str) -> None:
    await cache.put_many(
        "acme", provider, {key(p): answer(provider) for p in people}, job_id=job_id
    )


async def cached(
    cache: ProviderCache, provider: str, *people: str, tenant: str = "acme"
) -> set[str]:
    """The people among `people` with an answer of `provider` (read as a new job would)."""
    found = await cache.get_many(tenant, provider, [key(p) for p in people], job_id="reader")
    return {p for p in people if key(p) in found}


async def rows(cache: ProviderCache, table: str) -> int:
    return int(
        await cache.store.run(lambda c: c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    )


async def age(cache: ProviderCache, seconds: float) -> None:
    """Make every row in the cache `seconds` older."""

    def shift(conn: Connection) -> None:
        conn.execute("UPDATE provider_answers SET stored_at = stored_at - ?", (seconds,))
        conn.execute("UPDATE cache_jobs SET used_at = used_at - ?", (seconds,))

    await cache.store.transaction(shift)


async def test_expired_rows_are_deleted_and_fresh_ones_kept(cache: ProviderCache) -> None:
    await put(cache, "old-job", "alpha", "Ada", "Grace")
    await age(cache, TTL_S + 60)
    await put(cache, "new-job", "alpha", "Alan")

    removed = await cache.purge_expired()

    assert removed == 4  # two answers and the old job's two usage records
    assert await rows(cache, "provider_answers") == 1
    assert await rows(cache, "cache_jobs") == 1
    assert await cached(cache, "alpha", "Ada", "Grace", "Alan") == {"Alan"}


async def test_purge_deletes_a_chunk_per_transaction(
    cache: ProviderCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [f"person {i}" for i in range(2 * PURGE_CHUNK + 7)]
    await put(cache, "old-job", "alpha", *people)
    await age(cache, TTL_S + 60)
    await put(cache, "new-job", "alpha", "Alan")
    deleted_per_transaction: list[int] = []
    transaction = cache.store.transaction

    async def counting(fn: Callable[[Connection], T]) -> T:
        before = await rows(cache, "provider_answers") + await rows(cache, "cache_jobs")
        result = await transaction(fn)
        after = await rows(cache, "provider_answers") + await rows(cache, "cache_jobs")
        deleted_per_transaction.append(before - after)
        return result

    monkeypatch.setattr(cache.store, "transaction", counting)
    assert await cache.purge_expired() == 2 * len(people)

    # Never more than a chunk of each table in one write lock: 3 chunks and the empty check.
    assert deleted_per_transaction == [2 * PURGE_CHUNK, 2 * PURGE_CHUNK, 14, 0]
    assert await rows(cache, "provider_answers") == 1


async def test_deleting_a_job_removes_every_entry_it_used(cache: ProviderCache) -> None:
    await put(cache, "job-a", "alpha", "Ada", "Shared")
    await put(cache, "job-a", "beta", "Ada")
    await put(cache, "job-b", "alpha", "Bob")
    # Job B was answered from job A's entry: a hit is a use too.
    assert await cache.get_many("acme", "alpha", [key("Shared")], job_id="job-b")
    # The same person for another tenant is another tenant's data.
    await cache.put_many("other", "alpha", {key("Ada"): answer("alpha")}, job_id="job-x")

    assert await cache.forget_job("job-a") == 2

    assert await cached(cache, "alpha", "Ada", "Shared", "Bob") == {"Bob"}
    assert await cached(cache, "beta", "Ada") == set()
    assert await cached(cache, "alpha", "Ada", tenant="other") == {"Ada"}
    assert await cache.forget_job("job-a") == 0


async def test_an_entry_shared_by_two_jobs_goes_when_the_second_is_deleted(
    cache: ProviderCache,
) -> None:
    await put(cache, "job-a", "alpha", "Ada")
    assert await cache.get_many("acme", "alpha", [key("Ada")], job_id="job-b")

    assert await cache.forget_job("job-b") == 1

    assert await cached(cache, "alpha", "Ada") == set()


async def test_a_deletion_is_applied_by_the_purge_loop_and_not_undone(
    cache: ProviderCache,
) -> None:
    await put(cache, "job-a", "alpha", "Ada")
    await put(cache, "job-b", "alpha", "Bob")
    purge = supervise("cache-purge", cache.run_purge)
    try:
        cache.job_deleted(JobDeleted(job_id="job-a", tenant="acme"))

        async def forgotten() -> bool:
            return await cached(cache, "alpha", "Ada", "Bob") == {"Bob"}

        await wait_until(forgotten, timeout_s=10, what="job A's entries removed")
        # A straggling task of the deleted job does not put its answers back.
        await put(cache, "job-a", "alpha", "Ada")
        assert await cached(cache, "alpha", "Ada") == set()
    finally:
        await purge.stop()


async def test_a_failing_purge_is_retried_until_the_deletion_is_done(
    cache: ProviderCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    await put(cache, "job-a", "alpha", "Ada")
    failures = 2
    forget_chunk = cache_module.forget_chunk

    def locked_at_first(conn: Connection, job_id: str, limit: int = PURGE_CHUNK) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return forget_chunk(conn, job_id, limit)

    monkeypatch.setattr(cache_module, "forget_chunk", locked_at_first)
    purge = supervise("cache-purge", cache.run_purge, Backoff(base_s=0.01, max_s=0.05))
    try:
        cache.job_deleted(JobDeleted(job_id="job-a", tenant="acme"))

        async def forgotten() -> bool:
            return await cached(cache, "alpha", "Ada") == set()

        await wait_until(forgotten, timeout_s=10, what="the deletion done after the failures")
        assert failures == 0
        assert purge.died is None
    finally:
        await purge.stop()


async def test_a_disabled_cache_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    kept = ProviderCache(path, ttl_s=TTL_S)
    await kept.open()
    await put(kept, "job-a", "alpha", "Ada")
    await kept.close()

    disabled = ProviderCache(path, ttl_s=0)
    await disabled.open()
    try:
        await disabled.purge_expired()
        assert await rows(disabled, "provider_answers") == 0
        assert await rows(disabled, "cache_jobs") == 0
    finally:
        await disabled.close()


async def test_the_loop_wakes_for_a_deletion(cache: ProviderCache) -> None:
    """Between rounds the loop waits for a deletion, not for its (hourly) timer."""
    await put(cache, "old-job", "alpha", "Grace")
    await age(cache, TTL_S + 60)
    await put(cache, "job-a", "alpha", "Ada")
    task = asyncio.create_task(cache.run_purge(every_s=3600))
    try:

        async def first_round_done() -> bool:
            return await cached(cache, "alpha", "Grace", "Ada") == {"Ada"} and not await rows(
                cache, "cache_jobs WHERE job_id = 'old-job'"
            )

        await wait_until(first_round_done, timeout_s=10, what="the first round")
        cache.job_deleted(JobDeleted(job_id="job-a", tenant="acme"))

        async def forgotten() -> bool:
            return await cached(cache, "alpha", "Ada") == set()

        await wait_until(forgotten, timeout_s=10, what="the deletion applied at once")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
