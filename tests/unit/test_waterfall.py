"""The waterfall's order, stopping rule and reuse of earlier answers, with fake providers
that implement our own `Provider` interface (no HTTP)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.enricher.cache import ProviderCache
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import ProviderRejected, ProviderUnavailable, Reply
from services.enricher.steps import run_local_steps
from services.enricher.waterfall import Waterfall
from shared.health import Metrics
from shared.messages import Lead, ProviderAnswer


@dataclass
class FakeProvider:
    name: str
    found: dict[str, str] = field(default_factory=dict)
    down: bool = False
    calls: int = 0

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
