"""The provider waterfall: ask providers in order until the wanted fields are found.

A provider's answer, once obtained, is never paid for again for that lead: it travels
with the lead across retries (`ProviderAnswer`) and is kept in the provider cache, which
a redelivered task (after a crash) finds. A provider that is unavailable is skipped for
now; if the lead ends incomplete because of it, the lead is retried later. A provider
that rejects the lead (4xx) is not asked again; if nobody completes the lead, it fails
with the rejection as its reason.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from services.enricher.cache import ProviderCache, fingerprint
from services.enricher.draft import LeadDraft
from services.enricher.providers.base import Provider, ProviderRejected, ProviderUnavailable
from services.enricher.steps.domain import normalise_domain
from shared.logging import get_logger
from shared.messages import ProviderAnswer

WANTED = ("email", "company_domain")
log = get_logger(__name__)


@dataclass
class WaterfallResult:
    answers: list[ProviderAnswer] = field(default_factory=list)
    # Providers that could not answer now (retry later) and ones that refused the lead.
    errors: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    retry_after_s: float | None = None
    # Paid calls made for this lead now, by provider (answers from the cache cost nothing).
    calls: Counter[str] = field(default_factory=Counter)


class Waterfall:
    def __init__(self, providers: Sequence[Provider], cache: ProviderCache) -> None:
        self.providers = tuple(providers)
        self.cache = cache

    async def run(
        self,
        drafts: Sequence[LeadDraft],
        prior: dict[str, list[ProviderAnswer]],
        job_id: str,
        tenant: str,
    ) -> list[WaterfallResult]:
        return list(
            await asyncio.gather(
                *(self.run_one(d, prior.get(d.id, []), job_id, tenant) for d in drafts)
            )
        )

    async def run_one(
        self, draft: LeadDraft, prior: Sequence[ProviderAnswer], job_id: str, tenant: str
    ) -> WaterfallResult:
        with structlog.contextvars.bound_contextvars(lead_id=draft.id):
            known = {answer.provider: answer for answer in prior}
            result = WaterfallResult()
            for provider in self.providers:
                if is_complete(draft):
                    break
                answer = known.get(provider.name)
                if answer is None:
                    if not provider.can_help(draft):
                        continue
                    try:
                        answer = await self._ask(provider, draft, job_id, tenant, result.calls)
                    except ProviderUnavailable as e:
                        result.errors.append(str(e))
                        result.retry_after_s = max(
                            e.retry_after_s or 0.0, result.retry_after_s or 0.0
                        )
                        continue
                    except ProviderRejected as e:
                        log.warning("provider.rejected", provider=provider.name, error=str(e))
                        result.rejections.append(str(e))
                        answer = ProviderAnswer(provider=provider.name)
                    known[provider.name] = answer
                apply_answer(draft, answer)
            if is_complete(draft):
                result.errors.clear()  # a later provider made up for an unavailable one
                result.rejections.clear()
            result.answers = list(known.values())
            return result

    async def _ask(
        self, provider: Provider, draft: LeadDraft, job_id: str, tenant: str, calls: Counter[str]
    ) -> ProviderAnswer:
        key = fingerprint(provider.query(draft))
        found = await self.cache.get(tenant, provider.name, key)
        if found is None:
            try:
                found = await provider.lookup(draft, job_id)
            except ProviderRejected:
                calls[provider.name] += 1
                raise
            calls[provider.name] += 1
            await self.cache.put(tenant, provider.name, key, found)
        return ProviderAnswer(provider=provider.name, found=found)


def apply_answer(draft: LeadDraft, answer: ProviderAnswer) -> None:
    source = f"provider:{answer.provider}"
    found = answer.found
    if draft.fill("email", found.get("email"), source):
        draft.fill("email_status", found.get("email_status"), source)
    domain = found.get("company_domain")
    if domain:
        draft.fill("company_domain", normalise_domain(domain), source)


def is_complete(draft: LeadDraft) -> bool:
    return all(draft.get(name) for name in WANTED)
