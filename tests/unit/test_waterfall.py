"""The waterfall's order, stopping rule and reuse of earlier answers, with fake providers
that implement our own `Provider` interface (no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.enricher.cache import ProviderCache, fingerprint
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import ProviderRejected, ProviderUnavailable, Reply
from services.enricher.spending import Spending
from services.enricher.steps import run_local_steps
from services.enricher.waterfall import Waterfall
from shared.health import Metrics
from shared.messages import Lead, ProviderAnswer
from shared.store import Store
from tests.helpers import wait_until


@dataclass
class FakeProvider:
    name: str
    found: dict[str, str] = field(default_factory=dict)
    down: bool = False
    calls: int = 0
    per_request: int = 100

    def can_help(self, draft: LeadDraft) -> bool:
        return True

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        return {"full_name": draft.get("full_name"), "company": draft.get("company")}

    async def lookup(self, draft: LeadDraft, job_id: str) -> dict[str, str]:
        self.calls += 1
        if self.down:
            raise ProviderUnavailable(f"{self.name}: HTTP 503", retry_after_s=3)
        return dict(self.found)

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        replies: list[Reply] = []
        for draft in drafts:
            try:
                replies.append(await self.lookup(draft, job_id))
            except (ProviderUnavailable, ProviderRejected) as e:
                replies.append(e)
        return replies


def lead() -> LeadDraft:
    return run_local_steps(LeadDraft.of(Lead(id="l1", full_name="Ada Lovelace", company="Engines")))


async def test_stops_at_the_first_provider_that_completes_the_lead(cache: ProviderCache) -> None:
    alpha = FakeProvider("alpha", {"company_domain": "engines.io"})
    beta = FakeProvider("beta", {"email": "ada@engines.io", "email_status": "valid"})
    gamma = FakeProvider("gamma", {"email": "other@engines.io"})
    draft = lead()
    [result] = await Waterfall([alpha, beta, gamma], cache, ProviderMetrics(Metrics())).run(
        [draft], {}, "job", "t"
    )
    assert draft.get("email") == "ada@engines.io"
    assert draft.sources["email"] == "provider:beta"
    assert draft.sources["company_domain"] == "provider:alpha"
    assert (alpha.calls, beta.calls, gamma.calls) == (1, 1, 0)
    assert result.errors == []


async def test_unavailable_provider_is_reported_unless_another_makes_up_for_it(
    cache: ProviderCache,
) -> None:
    alpha = FakeProvider("alpha", down=True)
    beta = FakeProvider("beta", {"company_domain": "engines.io"})
    [result] = await Waterfall([alpha, beta], cache, ProviderMetrics(Metrics())).run(
        [lead()], {}, "job", "t"
    )
    assert result.errors == ["alpha: HTTP 503"]
    assert result.retry_after_s == 3
    assert list(result.answers) == ["beta"]

    full = FakeProvider(
        "gamma",
        {"company_domain": "engines.io", "email": "ada@engines.io", "email_status": "valid"},
    )
    [result] = await Waterfall(
        [FakeProvider("alpha", down=True), full], cache, ProviderMetrics(Metrics())
    ).run([lead()], {}, "job", "t")
    assert result.errors == []


async def test_answers_from_an_earlier_attempt_are_not_paid_again(cache: ProviderCache) -> None:
    alpha = FakeProvider("alpha", {"email": "never@called.io", "email_status": "valid"})
    beta = FakeProvider("beta", {"email": "ada@engines.io", "email_status": "valid"})
    prior = {"l1": [ProviderAnswer(provider="alpha", found={"company_domain": "engines.io"})]}
    draft = lead()
    [result] = await Waterfall([alpha, beta], cache, ProviderMetrics(Metrics())).run(
        [draft], prior, "job", "t"
    )
    assert alpha.calls == 0
    assert beta.calls == 1
    assert draft.get("company_domain") == "engines.io"
    assert set(result.answers) == {"alpha", "beta"}


async def test_cached_answers_survive_a_new_waterfall_and_are_per_tenant(
    cache: ProviderCache,
) -> None:
    alpha = FakeProvider(
        "alpha",
        {"email": "ada@engines.io", "email_status": "valid", "company_domain": "engines.io"},
    )
    await Waterfall([alpha], cache, ProviderMetrics(Metrics())).run([lead()], {}, "job-1", "t")
    draft = lead()
    await Waterfall([alpha], cache, ProviderMetrics(Metrics())).run([draft], {}, "job-2", "t")
    assert alpha.calls == 1
    assert draft.get("email") == "ada@engines.io"
    await Waterfall([alpha], cache, ProviderMetrics(Metrics())).run(
        [lead()], {}, "job-3", "other-tenant"
    )
    assert alpha.calls == 2


async def test_rejection_fails_the_lead_only_if_nobody_completes_it(cache: ProviderCache) -> None:
    class Rejecting(FakeProvider):
        async def lookup(self, draft: LeadDraft, job_id: str) -> dict[str, str]:
            self.calls += 1
            raise ProviderRejected(f"{self.name}: HTTP 422 bad name")

    [result] = await Waterfall([Rejecting("alpha")], cache, ProviderMetrics(Metrics())).run(
        [lead()], {}, "job", "t"
    )
    assert result.rejections == ["alpha: HTTP 422 bad name"]
    beta = FakeProvider(
        "beta", {"email": "ada@engines.io", "email_status": "valid", "company_domain": "engines.io"}
    )
    [result] = await Waterfall([Rejecting("alpha"), beta], cache, ProviderMetrics(Metrics())).run(
        [lead()], {}, "job", "t"
    )
    assert result.rejections == []


async def test_a_refusal_still_counts_when_the_answer_comes_from_a_retry_or_the_cache(
    cache: ProviderCache,
) -> None:
    class Rejecting(FakeProvider):
        async def lookup(self, draft: LeadDraft, job_id: str) -> dict[str, str]:
            self.calls += 1
            raise ProviderRejected(f"{self.name}: HTTP 422 bad name")

    alpha, beta = Rejecting("alpha"), FakeProvider("beta", down=True)
    waterfall = Waterfall([alpha, beta], cache, ProviderMetrics(Metrics()))
    [first] = await waterfall.run([lead()], {}, "job", "t")
    assert first.errors == ["beta: HTTP 503"]  # retried later, with alpha's refusal carried
    prior = {"l1": list(first.answers.values())}
    beta.down = False
    [retried] = await waterfall.run([lead()], prior, "job", "t")
    assert alpha.calls == 1
    assert retried.rejections == ["alpha: HTTP 422 bad name"]
    [cached] = await waterfall.run([lead()], {}, "job-2", "t")
    assert alpha.calls == 1
    assert cached.rejections == ["alpha: HTTP 422 bad name"]


@dataclass
class OnePersonAPI:
    """A per-person API (like Hunter's finder) whose answer about `slow` waits for `go`."""

    name: str = "hunter"
    slow: str = "l0"
    go: asyncio.Event = field(default_factory=asyncio.Event)
    per_request: int = 1

    def can_help(self, draft: LeadDraft) -> bool:
        return True

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        return {"id": draft.id}

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        assert len(drafts) <= self.per_request
        if any(d.id == self.slow for d in drafts):
            await self.go.wait()
        return [{"email": f"{d.id}@engines.io", "email_status": "valid"} for d in drafts]


async def test_each_request_is_paid_and_cached_as_its_answer_arrives(
    cache: ProviderCache, store: Store
) -> None:
    """A crash loses only the requests in flight: the answers already in are written down
    (settled in the ledger, cached) while the task's slowest request still waits."""
    await store.transaction(
        lambda conn: conn.execute(
            "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, spec)"
            " VALUES ('job', 't', 'enrich', 'running', 'normal', 5, '2026-01-01T00:00:00Z',"
            " x'7b7d')"
        )
    )
    api = OnePersonAPI()
    spending = Spending(store, 0, kinds={"hunter": "hunter"}, keys={"hunter": "k"})
    waterfall = Waterfall([api], cache, ProviderMetrics(Metrics()), spending=spending)
    drafts = [
        run_local_steps(LeadDraft.of(Lead(id=f"l{i}", full_name="Ada Lovelace", company="E")))
        for i in range(5)
    ]
    keys = [fingerprint(api.query(d)) for d in drafts]
    running = asyncio.create_task(waterfall.run(drafts, {}, "job", "t"))

    async def settled() -> list[tuple[int, int]]:
        rows = await store.run(
            lambda c: c.execute(
                "SELECT leads, credits FROM credit_calls WHERE credits IS NOT NULL"
            ).fetchall()
        )
        return [tuple(row) for row in rows]

    try:
        await wait_until(
            lambda: cached_count(cache, keys[1:], 4), timeout_s=10, what="4 answers cached"
        )
        assert await settled() == [(1, 1)] * 4
        assert not running.done()
        assert await cache.peek_many("t", "hunter", keys[:1]) == {}
    finally:
        api.go.set()
        results = await asyncio.wait_for(running, 10)
    assert all(r.calls == {"hunter": 1} for r in results)
    assert await settled() == [(1, 1)] * 5


async def cached_count(cache: ProviderCache, keys: list[str], n: int) -> bool:
    return len(await cache.peek_many("t", "hunter", keys)) == n
