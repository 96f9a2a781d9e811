"""Cache lookups answer the same on both stores (fresh answers of this tenant and provider
only; a hit is recorded for the reading job, a peek records nothing), and on PostgreSQL a
lookup reads its keys by index even before the table has ever been analysed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.enricher.cache import ProviderCache, answers_query, fingerprint
from shared.dbapi import Connection
from shared.messages import ProviderAnswer
from tests.pg import pg_schema, scaleout_pg_url, unreachable

TTL_S = 3600.0
PG_URL = scaleout_pg_url()
PG_MISSING = unreachable(PG_URL)


@pytest.fixture(params=["sqlite", "postgresql"])
async def cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProviderCache]:
    if request.param == "sqlite":
        opened = ProviderCache(tmp_path / "cache.db", ttl_s=TTL_S)
        await opened.open()
        yield opened
        await opened.close()
        return
    if PG_MISSING is not None:
        pytest.skip(PG_MISSING)
    with pg_schema(PG_URL) as url:
        opened = ProviderCache(url, ttl_s=TTL_S)
        await opened.open()
        yield opened
        await opened.close()


def key(person: str) -> str:
    return fingerprint({"full_name": person, "company": "Engines"})


def answer(person: str) -> ProviderAnswer:
    return ProviderAnswer(provider="alpha", found={"email": f"{person.lower()}@engines.example"})


async def put(cache: ProviderCache, tenant: str, provider: str, *people: str) -> None:
    await cache.put_many(
        tenant, provider, {key(p): answer(p) for p in people}, job_id=f"{tenant}-writer"
    )


async def users(cache: ProviderCache, job_id: str) -> int:
    def count(conn: Connection) -> int:
        row = conn.execute("SELECT count(*) FROM cache_jobs WHERE job_id = ?", (job_id,))
        return int(row.fetchone()[0])

    return await cache.store.run(count)


async def test_a_lookup_finds_the_fresh_answers_of_its_tenant_and_provider_only(
    cache: ProviderCache,
) -> None:
    await put(cache, "acme", "alpha", "Ada", "Grace")
    await cache.store.transaction(
        lambda c: c.execute(
            "UPDATE provider_answers SET stored_at = stored_at - ? WHERE fingerprint = ?",
            (TTL_S + 60, key("Grace")),
        )
    )
    await put(cache, "acme", "alpha", "Alan")
    await put(cache, "acme", "beta", "Edsger")
    await put(cache, "globex", "alpha", "Barbara")
    asked = [key(p) for p in ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Nobody")]

    peeked = await cache.peek_many("acme", "alpha", asked)
    found = await cache.get_many("acme", "alpha", asked, job_id="reader")

    assert found == peeked == {key("Ada"): answer("Ada"), key("Alan"): answer("Alan")}
    assert await users(cache, "reader") == 2  # the two hits, recorded by get_many only


@pytest.mark.skipif(PG_MISSING is not None, reason=PG_MISSING or "")
async def test_a_lookup_on_a_never_analysed_postgres_table_reads_only_its_keys() -> None:
    with pg_schema(PG_URL) as url:
        cache = ProviderCache(url, ttl_s=TTL_S)
        await cache.open()
        try:
            people = [f"Person {i}" for i in range(20_000)]
            for start in range(0, len(people), 2_000):
                await put(cache, "acme", "alpha", *people[start : start + 2_000])
            asked = [key(p) for p in people[:50]] + [key(f"Stranger {i}") for i in range(50)]

            def explain(conn: Connection) -> Any:
                sql, params = answers_query(conn, "acme", "alpha", asked, 0.0)
                row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
                plan = row[0]
                return json.loads(plan) if isinstance(plan, str) else plan

            plan = await cache.store.run(explain)
        finally:
            await cache.close()
    # The plain IN list, planned on a table without statistics, filtered all 20,000 rows
    # of the (tenant, provider) range for each lookup.
    assert rows_filtered_out(plan[0]["Plan"]) <= len(asked)


def rows_filtered_out(node: dict[str, Any]) -> float:
    """Rows a plan node and those below it read and then dropped by a filter."""
    own = float(node.get("Rows Removed by Filter", 0)) * float(node.get("Actual Loops", 1))
    return own + sum(rows_filtered_out(child) for child in node.get("Plans", []))
