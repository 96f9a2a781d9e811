"""The sandbox's vendor emulations: keys, per-key rate limits, billing rules in the stats,
and the adapters speaking to them (the emulation and the adapter follow the same docs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from services.enricher.config import ProviderSettings
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers import build_provider
from services.enricher.providers.base import ProviderParked
from services.sandbox.app import create_app
from services.sandbox.config import load_settings
from services.sandbox.vendors import person
from shared.config import EnvReader
from shared.health import Metrics
from shared.messages import Lead
from tests.unit.test_vendor_adapters import FakeControl

DOMAIN = "engines.io"


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = TestServer(create_app(load_settings(EnvReader({}))), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield str(server.make_url("")).rstrip("/"), session
    await server.close()


async def knobs(base: str, session: aiohttp.ClientSession, **patch: Any) -> None:
    async with session.put(f"{base}/_sandbox/config", json=patch) as response:
        assert response.status == 200, await response.text()


async def stats(base: str, session: aiohttp.ClientSession) -> dict[str, Any]:
    async with session.get(f"{base}/_sandbox/stats") as response:
        return dict(await response.json())


async def finder(
    base: str, session: aiohttp.ClientSession, key: str, first: str = "Ada"
) -> aiohttp.ClientResponse:
    params = {"first_name": first, "last_name": "Lovelace", "company": "Analytical Engines"}
    async with session.get(
        f"{base}/vendors/hunter/v2/email-finder", params=params, headers={"X-API-KEY": key}
    ) as response:
        await response.read()
        return response


async def test_rate_limit_per_key_in_the_vendors_own_signal(
    sandbox: tuple[str, aiohttp.ClientSession],
) -> None:
    base, session = sandbox
    await knobs(base, session, rate_limits={"hunter": 2, "pdl": 1})

    statuses = [(await finder(base, session, "k1")).status for _ in range(3)]
    other_key = await finder(base, session, "k2")
    pdl = []
    for _ in range(2):
        async with session.post(
            f"{base}/vendors/pdl/v5/person/bulk",
            json={"requests": [{"params": {"name": "Ada Lovelace", "company": "x.io"}}]},
            headers={"X-Api-Key": "k1"},
        ) as response:
            pdl.append((response.status, response.headers.get("Retry-After")))

    assert statuses == [200, 200, 403]  # Hunter throttles with 403
    assert other_key.status == 200  # the window is per key
    assert pdl[0][0] == 200
    assert pdl[1] == (429, "1")
    after = await stats(base, session)
    assert after["rate_limited"] == {"hunter": 1, "pdl": 1}
    assert "requests" in after  # the existing stats are still there
    assert "jobs" in after


async def test_rate_limits_cover_leadflow_providers_and_sources_too(
    sandbox: tuple[str, aiohttp.ClientSession],
) -> None:
    base, session = sandbox
    await knobs(base, session, rate_limits={"alpha": 2, "sandbox": 1})

    async def alpha(key: str, bulk: bool = False) -> tuple[int, str | None]:
        body: dict[str, Any] = {"full_name": "Ada Lovelace", "company": "Engines"}
        path = "/v1/person"
        if bulk:  # a bulk call of three people counts as one request
            path, body = "/v1/person/bulk", {"people": [body, body, body]}
        async with session.post(
            f"{base}/providers/alpha{path}", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            await response.read()
            return response.status, response.headers.get("Retry-After")

    async def search(key: str) -> int:
        async with session.get(
            f"{base}/sources/sandbox/v1/search",
            params={"keywords": "vp"},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            await response.read()
            return response.status

    first = [await alpha("k1", bulk=True), await alpha("k1")]
    limited = await alpha("k1")
    assert all(status != 429 for status, _ in first)  # two requests: the allowance
    assert limited == (429, "1")  # Retry-After in whole seconds, never 0
    assert (await alpha("k2"))[0] != 429  # per key
    assert [await search("acct-a"), await search("acct-a"), await search("acct-b")] == [
        200,
        429,
        200,
    ]
    assert (await stats(base, session))["rate_limited"] == {"alpha": 1, "sandbox": 1}


async def test_bad_and_spent_keys(sandbox: tuple[str, aiohttp.ClientSession]) -> None:
    base, session = sandbox
    assert (await finder(base, session, "invalid-key")).status == 401
    assert (await finder(base, session, "no-credits-key")).status == 429  # Hunter: usage limit
    async with session.post(
        f"{base}/vendors/dropcontact/v1/enrich/all",
        json={"data": [{"full_name": "Ada Lovelace"}]},
        headers={"X-Access-Token": "no-credits-key"},
    ) as response:
        assert response.status == 403


async def test_hunter_charges_a_found_email_once(
    sandbox: tuple[str, aiohttp.ClientSession],
) -> None:
    base, session = sandbox
    await knobs(base, session, coverage={"hunter": 1.0})
    for _ in range(2):
        await finder(base, session, "k1")
    expected = person("hunter", 1.0, "Ada", "Lovelace", "Analytical Engines", None)
    found = expected.email is not None and expected.verdict != "invalid"
    assert (await stats(base, session)).get("credits", {}).get("hunter", 0) == int(found)


def settings(base: str, kind: str, key: str = "k1") -> ProviderSettings:
    return ProviderSettings(
        name=kind,
        kind=kind,
        url=f"{base}/vendors/{kind}",
        keys=(key,),
        timeout_s=5,
        concurrency=4,
        rate_per_s=0,
        bulk=True,
        cooldown_s=1,
        poll_s=0.01,
    )


@pytest.mark.parametrize("kind", ["hunter", "pdl", "apollo", "dropcontact"])
async def test_each_adapter_speaks_to_its_emulation(
    sandbox: tuple[str, aiohttp.ClientSession], kind: str
) -> None:
    base, session = sandbox
    await knobs(base, session, coverage={kind: 1.0})
    adapter = build_provider(
        settings(base, kind), session, FakeControl(), ProviderMetrics(Metrics())
    )
    people = [("Grace", "Hopper"), ("Alan", "Turing"), ("Linus", "Torvalds")]
    drafts = [
        LeadDraft.of(
            Lead(id=f"l{i}", first_name=f, last_name=last, company="Engines", company_domain=DOMAIN)
        )
        for i, (f, last) in enumerate(people)
    ]

    replies = await adapter.lookup_many(drafts, "job")

    for (first, last), reply in zip(people, replies, strict=True):
        assert isinstance(reply, dict), reply
        world = person(kind, 1.0, first, last, None, DOMAIN)
        assert reply.get("company_domain", "").removeprefix("www.") == DOMAIN
        # Every vendor returns the world's address unless its verdict keeps it back.
        assert reply.get("email") in (world.email, None)
        assert reply.get("email") or world.verdict in ("invalid", "unknown")
    parked = build_provider(
        settings(base, kind, "invalid-key"), session, FakeControl(), ProviderMetrics(Metrics())
    )
    assert all(isinstance(r, ProviderParked) for r in await parked.lookup_many(drafts, "job"))
