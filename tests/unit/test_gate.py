"""One gate for every external API account: cooldowns and request rates, for providers
(both adapter families) and scraper sources alike (shared/ratelimit.py `Gate`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.enricher.config import ProviderSettings
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import ProviderUnavailable
from services.enricher.providers.http import PersonMatchProvider
from services.enricher.providers.vendor import Answer, VendorClient
from services.scraper.config import SourceSettings
from services.scraper.handlers import ScrapeHandler
from services.scraper.sources.base import (
    AccountCoolingDown,
    AccountOverRate,
    Page,
    SourceRateLimited,
)
from services.scraper.sources.http import SearchApiSource
from shared.config import ApiSettings
from shared.consumer import Delivery, Handled
from shared.errors import TransientError
from shared.health import Metrics
from shared.messages import JobCoolingDown, Lead, ScrapeTask
from shared.ratelimit import Gate


@dataclass
class FakeCooldowns:
    """The control stream's cooldown interface, in memory."""

    until: dict[str, float] = field(default_factory=dict)

    def cooldown_left(self, target: str) -> float:
        return max(0.0, self.until.get(target, 0.0) - time.time())

    async def start_cooldown(self, target: str, until: float) -> None:
        self.until[target] = until


class Cooling(TransientError):
    pass


class OverRate(TransientError):
    pass


def api(rate_per_s: float = 0.0, cooldown_s: float = 30.0) -> ApiSettings:
    return ApiSettings(
        name="acme",
        url="http://127.0.0.1:9",
        keys=("k",),
        timeout_s=1.0,
        rate_per_s=rate_per_s,
        cooldown_s=cooldown_s,
    )


async def test_a_cooldown_raises_the_callers_error_with_the_time_left() -> None:
    cooldowns = FakeCooldowns({"source:acme:acct0": time.time() + 5})
    gate = Gate(api(), "source:acme:acct0", cooldowns, max_wait_s=0.5)
    with pytest.raises(Cooling) as raised:
        await gate.wait_turn(Cooling, OverRate)
    assert raised.value.retry_after_s is not None
    assert 4 < raised.value.retry_after_s <= 5
    assert str(raised.value).startswith("acme: cooling down for")


async def test_a_far_turn_raises_over_rate_unbooked_and_a_near_one_is_waited() -> None:
    gate = Gate(api(rate_per_s=1.0), "provider:acme", FakeCooldowns(), max_wait_s=0.5)
    await gate.wait_turn(Cooling, OverRate)  # the burst's one token
    with pytest.raises(OverRate) as raised:
        await gate.wait_turn(Cooling, OverRate)
    assert raised.value.retry_after_s is not None
    assert raised.value.retry_after_s > 0.5
    with pytest.raises(Cooling):  # one error class: it serves for both
        await gate.wait_turn(Cooling)
    # 20/s is a sliding one-second window: 20 turns at once, the 21st a window later,
    # waited when the gate may wait that long.
    near = Gate(api(rate_per_s=20.0), "provider:acme", FakeCooldowns(), max_wait_s=1.5)
    started = time.monotonic()
    for _ in range(21):
        await near.wait_turn(Cooling, OverRate)
    assert 1.0 <= time.monotonic() - started < 1.4


async def test_cool_down_takes_retry_after_or_the_configured_pause() -> None:
    cooldowns = FakeCooldowns()
    gate = Gate(api(cooldown_s=30.0), "provider:acme", cooldowns, max_wait_s=1.0)
    assert await gate.cool_down(2.0) == 2.0
    assert 1 < cooldowns.cooldown_left("provider:acme") <= 2
    assert await gate.cool_down(None) == 30.0
    assert 29 < cooldowns.cooldown_left("provider:acme") <= 30


def provider_settings(url: str) -> ProviderSettings:
    return ProviderSettings(
        name="alpha",
        url=url,
        keys=("k",),
        timeout_s=1.0,
        concurrency=2,
        rate_per_s=0.0,
        bulk=False,
        cooldown_s=30.0,
    )


@dataclass
class Counting:
    requests: int = 0
    url: str = ""


@pytest.fixture
async def answering_429() -> AsyncIterator[Counting]:
    counting = Counting()

    async def handle(_: web.Request) -> web.Response:
        counting.requests += 1
        return web.json_response({}, status=429, headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    counting.url = str(server.make_url("")).rstrip("/")
    yield counting
    await server.close()


async def test_both_provider_families_cool_down_on_429_and_then_send_nothing(
    answering_429: Counting,
) -> None:
    cooldowns = FakeCooldowns()
    metrics = ProviderMetrics(Metrics())
    settings = provider_settings(answering_429.url)
    draft = LeadDraft.of(Lead(id="l1", full_name="Ada Lovelace", company="Engines"))
    async with aiohttp.ClientSession() as session:
        provider = PersonMatchProvider(settings, session, cooldowns, metrics)
        [first] = await provider.lookup_many([draft], "job-1")
        assert isinstance(first, ProviderUnavailable)
        assert first.status == 429
        assert 2 < cooldowns.cooldown_left("provider:alpha:key0") <= 3
        [second] = await provider.lookup_many([draft], "job-1")
        assert isinstance(second, ProviderUnavailable)
        assert "cooling down" in str(second)
        assert answering_429.requests == 1

        client = VendorClient(settings, session, cooldowns, metrics, lambda key: {})
        with pytest.raises(ProviderUnavailable, match="alpha: cooling down"):
            await client.request("GET", "/v2/anything", "job-1")
        assert answering_429.requests == 1
        cooldowns.until.clear()
        answer = await client.request("GET", "/v2/anything", "job-1")
        throttled = await client.throttled(answer)
        assert isinstance(answer, Answer)
        assert throttled.retry_after_s == 3.0
        assert 2 < cooldowns.cooldown_left("provider:alpha:key0") <= 3


def source_settings(rate_per_s: float = 0.0) -> SourceSettings:
    return SourceSettings(
        name="sandbox",
        url="http://127.0.0.1:9",
        keys=("k0", "k1"),
        timeout_s=1.0,
        rate_per_s=rate_per_s,
        cooldown_s=60.0,
        page_size=10,
    )


class ScriptedSource(SearchApiSource):
    """The real source's gates, with fetch scripted (no HTTP)."""

    def __init__(self, settings: SourceSettings, cooldowns: FakeCooldowns) -> None:
        super().__init__(settings, cast(Any, None), cooldowns)
        self.fetches = 0
        self.rate_limited: float | None = None
        self.error: Exception | None = None

    async def fetch(
        self, account: str, query: dict[str, str], cursor: str | None, job_id: str
    ) -> Page:
        self.fetches += 1
        if self.rate_limited is not None:
            raise SourceRateLimited("sandbox: HTTP 429", retry_after_s=self.rate_limited)
        if self.error is not None:
            raise self.error
        return self.page(cursor)

    def page(self, cursor: str | None) -> Page:
        return Page(leads=[Lead(id="a")], next_cursor=None)


def page_task() -> ScrapeTask:
    return ScrapeTask(
        job_id="job-1",
        tenant="acme",
        source="sandbox",
        query={"keywords": "x"},
        max_pages=1,
        max_leads=10,
        account="acct1",
    )


def cooling_notices(out: Handled[ScrapeTask]) -> list[JobCoolingDown]:
    return [o.message for o in out.publish if isinstance(o.message, JobCoolingDown)]


async def test_the_scraper_gates_each_account_and_cools_it_down_on_429() -> None:
    cooldowns = FakeCooldowns()
    source = ScriptedSource(source_settings(), cooldowns)
    handler = ScrapeHandler({"sandbox": source}, 25, Metrics())
    delivery = Delivery(attempt=0, redelivered=False)

    source.rate_limited = 7.0
    out = await handler(page_task(), delivery)
    assert source.fetches == 1
    assert len(cooling_notices(out)) == 1
    assert 6 < cooldowns.cooldown_left("source:sandbox:acct1") <= 7
    assert cooldowns.cooldown_left("source:sandbox:acct0") == 0  # the other account goes on

    out = await handler(page_task(), delivery)  # in the cooldown: not fetched
    assert source.fetches == 1
    assert len(cooling_notices(out)) == 1
    [retry] = out.retries
    assert retry.later, "a cooldown spends no attempt"
    assert 6 < retry.after_s <= 7


async def test_the_scraper_hands_a_far_turn_back_without_a_cooldown_notice() -> None:
    source = ScriptedSource(source_settings(rate_per_s=0.1), FakeCooldowns())
    handler = ScrapeHandler({"sandbox": source}, 25, Metrics())
    delivery = Delivery(attempt=0, redelivered=False)
    await handler(page_task(), delivery)
    out = await handler(page_task(), delivery)
    assert source.fetches == 1
    assert cooling_notices(out) == []
    [retry] = out.retries
    assert retry.later
    assert retry.after_s > 1
    with pytest.raises(AccountOverRate):
        await source.gate("acct1").wait_turn(AccountCoolingDown, AccountOverRate)
