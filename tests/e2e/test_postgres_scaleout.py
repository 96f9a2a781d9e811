"""Two gateways and two routers on one PostgreSQL database (no global write lock): the
invariants SQLite's single writer used to give hold across processes.

No enricher runs, so accepted jobs stay unfinished: a CSV name stays claimed and every
accepted job keeps its quota charge."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from services.router.deadletters import DeadLetter, park
from shared.messages import Codec, JobCoolingDown
from shared.store import Store
from tests.conftest import make_stack, teardown_stack
from tests.helpers import Api
from tests.pg import pg_schema, scaleout_pg_url, unreachable

QUOTA = 1000
PG_URL = scaleout_pg_url()
pytestmark = pytest.mark.skipif((reason := unreachable(PG_URL)) is not None, reason=reason or "")


class Pair:
    def __init__(self, store_url: str, first: Stack, second: Stack) -> None:
        self.store_url = store_url
        self.stacks = (first, second)

    def apis(self, http: aiohttp.ClientSession) -> tuple[Api, Api]:
        first, second = self.stacks
        return Api(first.url("gateway"), http), Api(second.url("gateway"), http)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.store_url) as conn:
            return list(conn.execute(sql, params).fetchall())


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with pg_schema(PG_URL) as store_url:
        env = {"LEADFLOW_STORE_URL": store_url, "LEADFLOW_DAILY_QUOTA_LEADS": str(QUOTA)}
        first = make_stack(Path(tmp_path_factory.mktemp("machine-a")), env)
        second = make_stack(
            Path(tmp_path_factory.mktemp("machine-b")),
            {**env, "LEADFLOW_BROKER_PREFIX": first.env["LEADFLOW_BROKER_PREFIX"]},
        )
        try:
            # Started at once on an empty database: the migrations must not collide.
            first.start("router", "gateway")
            second.start("router", "gateway")
            yield Pair(store_url, first, second)
        finally:
            teardown_stack(second)
            teardown_stack(first)


@pytest.fixture
async def http() -> Iterator[aiohttp.ClientSession]:  # type: ignore[misc]
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


async def test_parallel_posts_over_twenty_keys_make_twenty_jobs(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    apis = pair.apis(http)
    bodies = {key: {"leads": make_leads(1, seed=900 + key)} for key in range(20)}

    async def post(n: int) -> tuple[int, Any]:
        key = n % 20
        return await apis[n % 2].request(
            "POST",
            "/v1/jobs/enrich",
            json=bodies[key],
            headers={"Idempotency-Key": f"scale-{key}"},
        )

    answers = await asyncio.gather(*(post(n) for n in range(200)))
    assert Counter(status for status, _ in answers) == {202: 200}, answers
    by_key: dict[int, set[str]] = {}
    for n, (_, body) in enumerate(answers):
        by_key.setdefault(n % 20, set()).add(body["job_id"])
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    rows = pair.query("SELECT count(*) FROM jobs")
    assert rows[0][0] == 20


async def test_two_jobs_never_claim_one_csv_name(pair: Pair, http: aiohttp.ClientSession) -> None:
    apis = pair.apis(http)
    body = {"leads": make_leads(1, seed=950), "destinations": [{"type": "csv", "name": "claimed"}]}
    answers = await asyncio.gather(
        *(apis[n % 2].request("POST", "/v1/jobs/enrich", json=body) for n in range(30))
    )
    statuses = Counter(status for status, _ in answers)
    assert statuses == {202: 1, 409: 29}, answers


async def test_a_dead_letter_replayed_from_two_gateways_is_published_once(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    apis = pair.apis(http)
    job = await apis[0].submit({"leads": make_leads(1, seed=960)})
    body = Codec().encode(JobCoolingDown(job_id=job["job_id"], tenant="default", until=0.0))
    letter = DeadLetter(
        message_id="scale-dead-1",
        queue="test",
        tenant="default",
        job_id=job["job_id"],
        message_type="job.cooling_down",
        lead_ids=[],
        error="poison",
        history=["poison"],
        body=body,
    )
    store = Store(pair.store_url)
    try:
        await store.open()
        await store.transaction(lambda conn: park(conn, letter))
    finally:
        await store.close()
    (letter_id,) = pair.query("SELECT id FROM dead_letters WHERE message_id = 'scale-dead-1'")[0]
    answers = await asyncio.gather(
        *(
            apis[n % 2].request("POST", "/v1/dead-letters/replay", json={"ids": [letter_id]})
            for n in range(20)
        )
    )
    statuses = Counter(status for status, _ in answers)
    assert statuses == {202: 1, 404: 19}, answers
    replayed = [body for status, body in answers if status == 202]
    assert replayed[0]["replayed"] == [letter_id]


async def test_parallel_submits_never_exceed_the_daily_quota(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    apis = pair.apis(http)
    today = datetime.now(UTC).date().isoformat()

    def charged() -> int:
        sql = "SELECT COALESCE(SUM(leads), 0) FROM quota_charges WHERE day = %s"
        return int(pair.query(sql, (today,))[0][0])

    before = charged()
    size = 20
    answers = await asyncio.gather(
        *(
            apis[n % 2].request(
                "POST", "/v1/jobs/enrich", json={"leads": make_leads(size, seed=1000 + n)}
            )
            for n in range(80)
        )
    )
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {202, 429}, answers
    assert statuses[202] == (QUOTA - before) // size
    assert charged() == before + statuses[202] * size <= QUOTA
