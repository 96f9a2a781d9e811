"""The provider waterfall: ask providers in order until the wanted fields are found.

It runs a task's leads together, provider by provider: each provider gets one request for
all the leads still incomplete that it can help with (a bulk lookup where the provider has
one), so a task of 25 leads costs a couple of HTTP calls, not fifty.

A provider's answer, once obtained, is never paid for again for that lead: it travels
with the lead across retries (`ProviderAnswer`) and is kept in the provider cache, which
a redelivered task (after a crash) finds. A provider that is unavailable is skipped for
now; if a lead ends incomplete because of it, the lead is retried later. A provider that
rejects a lead (4xx) is not asked again; if nobody completes the lead, it fails with the
rejection as its reason. A provider parked (bad key, out of credits) cannot help: that counts
like a rejection for the lead, but is no answer about it and is not cached.

Every paid call goes through `spending` (services/enricher/spending.py): credits reserved
before, settled after. When the job's or tenant's budget refuses a call, the waterfall
stops for this task: the leads still incomplete are marked `paused` (the handler parks them
with the answers obtained so far).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.enricher.cache import ProviderCache, fingerprint
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import (
    Provider,
    ProviderParked,
    ProviderRejected,
    ProviderUnavailable,
    Reply,
)
from services.enricher.spending import BudgetPaused, Spending
from services.enricher.steps.domain import normalise_domain
from shared.logging import get_logger
from shared.messages import ProviderAnswer

WANTED = ("email", "company_domain")
log = get_logger(__name__)


@dataclass
class WaterfallResult:
    answers: dict[str, ProviderAnswer] = field(default_factory=dict)
    # Providers that could not answer now (retry later) and ones that refused the lead.
    errors: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    retry_after_s: float | None = None
    # Paid calls made for this lead now, by provider (answers from the cache cost nothing).
    calls: Counter[str] = field(default_factory=Counter)
    # Why the job's budget stopped this lead's waterfall (it waits for the job's resume).
    paused: str | None = None

    def unavailable(self, error: ProviderUnavailable) -> None:
        self.errors.append(str(error))
        self.retry_after_s = max(error.retry_after_s or 0.0, self.retry_after_s or 0.0)


class Waterfall:
    def __init__(
        self,
        providers: Sequence[Provider],
        cache: ProviderCache,
        metrics: ProviderMetrics,
        spending: Spending | None = None,
    ) -> None:
        self.providers = tuple(providers)
        self.cache = cache
        self.metrics = metrics
        self.spending = spending

    async def run(
        self,
        drafts: Sequence[LeadDraft],
        prior: dict[str, list[ProviderAnswer]],
        job_id: str,
        tenant: str,
    ) -> list[WaterfallResult]:
        results = [
            WaterfallResult(answers={a.provider: a for a in prior.get(d.id, [])}) for d in drafts
        ]
        for provider in self.providers:
            asking = []
            for draft, result in zip(drafts, results, strict=True):
                if is_complete(draft):
                    continue
                answer = result.answers.get(provider.name)
                if answer is not None:
                    apply_answer(draft, answer, result)
                elif provider.can_help(draft):
                    asking.append((draft, result))
            if asking:
                try:
                    await self._ask(provider, asking, job_id, tenant)
                except BudgetPaused as e:
                    return paused(drafts, results, e.reason)
        for draft, result in zip(drafts, results, strict=True):
            if is_complete(draft):  # a later provider made up for an unavailable one
                result.errors.clear()
                result.rejections.clear()
        return results

    async def _ask(
        self,
        provider: Provider,
        asking: list[tuple[LeadDraft, WaterfallResult]],
        job_id: str,
        tenant: str,
    ) -> None:
        keys = [fingerprint(provider.query(draft)) for draft, _ in asking]
        cached = await self.cache.get_many(tenant, provider.name, keys, job_id=job_id)
        to_call = [(i, draft) for i, (draft, _) in enumerate(asking) if keys[i] not in cached]
        if cached:
            self.metrics.calls.labels(provider=provider.name, outcome="cached").inc(
                len(asking) - len(to_call)
            )
        answered: dict[str, ProviderAnswer] = {}
        paused_by: str | None = None  # the budget that had room for only some leads
        if to_call:
            drafts = [draft for _, draft in to_call]
            if self.spending is None:
                replies = await provider.lookup_many(drafts, job_id)
            else:
                call, paused_by = await self.spending.reserve(
                    provider.name, job_id, tenant, len(drafts)
                )
                to_call, drafts = to_call[: call.leads], drafts[: call.leads]
                replies = await provider.lookup_many(drafts, job_id)
                await self.spending.settle(call, [keys[i] for i, _ in to_call], replies)
            for (i, draft), reply in zip(to_call, replies, strict=True):
                result = asking[i][1]
                self.count(provider.name, reply)
                if isinstance(reply, ProviderUnavailable):
                    result.unavailable(reply)
                    continue
                if isinstance(reply, ProviderParked):
                    # The account, not the lead, was refused: no paid call, nothing cached.
                    result.rejections.append(str(reply))
                    continue
                result.calls[provider.name] += 1
                if isinstance(reply, ProviderRejected):
                    log.warning(
                        "provider.rejected",
                        provider=provider.name,
                        lead_id=draft.id,
                        error=str(reply),
                    )
                    answered[keys[i]] = ProviderAnswer(provider=provider.name, rejected=str(reply))
                else:
                    answered[keys[i]] = ProviderAnswer(provider=provider.name, found=reply)
            await self.cache.put_many(tenant, provider.name, answered, job_id=job_id)
        for (draft, result), key in zip(asking, keys, strict=True):
            answer = cached.get(key) or answered.get(key)
            if answer is not None:
                result.answers[provider.name] = answer
                apply_answer(draft, answer, result)
        if paused_by is not None:
            raise BudgetPaused(job_id, paused_by)

    def count(self, provider: str, reply: Reply) -> None:
        if isinstance(reply, ProviderUnavailable):
            outcome = "unavailable"
        elif isinstance(reply, ProviderRejected):
            outcome = "rejected"
        else:
            outcome = "found" if reply else "not_found"
        self.metrics.calls.labels(provider=provider, outcome=outcome).inc()


def paused(
    drafts: Sequence[LeadDraft], results: list[WaterfallResult], reason: str
) -> list[WaterfallResult]:
    for draft, result in zip(drafts, results, strict=True):
        if not is_complete(draft):
            result.paused = reason
    return results


def apply_answer(draft: LeadDraft, answer: ProviderAnswer, result: WaterfallResult) -> None:
    """Fill what the answer found; a refusal counts, from a retry or the cache too."""
    if answer.rejected is not None:
        result.rejections.append(answer.rejected)
    source = f"provider:{answer.provider}"
    found = answer.found
    if draft.fill("email", found.get("email"), source):
        draft.fill("email_status", found.get("email_status"), source)
    domain = found.get("company_domain")
    if domain:
        draft.fill("company_domain", normalise_domain(domain), source)


def is_complete(draft: LeadDraft) -> bool:
    return all(draft.get(name) for name in WANTED)
