"""The provider waterfall: ask providers in order until the wanted fields are found.

A provider's answer, once obtained, travels with the lead (`ProviderAnswer`), so a retry
of the lead later never pays the same provider twice. A provider that is unavailable is
skipped for now; if the lead ends incomplete because of it, the lead is retried later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

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
    errors: list[str] = field(default_factory=list)
    retry_after_s: float | None = None

    @property
    def incomplete_because_of_errors(self) -> bool:
        return bool(self.errors)


class Waterfall:
    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers = tuple(providers)

    async def run(
        self, drafts: Sequence[LeadDraft], prior: dict[str, list[ProviderAnswer]], job_id: str
    ) -> list[WaterfallResult]:
        return list(
            await asyncio.gather(*(self.run_one(d, prior.get(d.id, []), job_id) for d in drafts))
        )

    async def run_one(
        self, draft: LeadDraft, prior: Sequence[ProviderAnswer], job_id: str
    ) -> WaterfallResult:
        with structlog.contextvars.bound_contextvars(lead_id=draft.id):
            return await self._run_one(draft, prior, job_id)

    async def _run_one(
        self, draft: LeadDraft, prior: Sequence[ProviderAnswer], job_id: str
    ) -> WaterfallResult:
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
                    answer = await self._ask(provider, draft, job_id)
                except ProviderUnavailable as e:
                    result.errors.append(str(e))
                    result.retry_after_s = max(e.retry_after_s or 0.0, result.retry_after_s or 0.0)
                    continue
                known[provider.name] = answer
            apply_answer(draft, answer)
        if is_complete(draft):
            result.errors.clear()  # a later provider made up for an unavailable one
        result.answers = list(known.values())
        return result

    async def _ask(self, provider: Provider, draft: LeadDraft, job_id: str) -> ProviderAnswer:
        try:
            found = await provider.lookup(draft, job_id)
        except ProviderRejected as e:
            log.warning("provider.rejected", provider=provider.name, error=str(e))
            found = {}
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
