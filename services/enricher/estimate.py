"""What a job would cost, without calling anyone: the waterfall walked over the provider
cache and each provider's record in the credit ledger.

Provider by provider, as the waterfall goes (services/enricher/waterfall.py): a lead the
provider can help with is answered from the cache when its answer is there (free, and
applied, so the next provider sees what it filled), or it would be a paid call. A paid
call's price is the provider's observed credits per lead asked, and it ends the lead's
waterfall with the provider's observed share of leads it found an email for (both from the
tenant's settled calls, shared/credits.py `provider_records`). A provider with no record
yet is priced at its most (a credit per lead) and assumed to find nothing, so the expected
figure never flatters. `credits_max` is every paid call charged its most, every lead
asked of every provider that could help it; `cached` counts the leads that need no paid
call at all.

The adapters' `query` and `can_help` read only the lead, so they are used here unbound,
without building an adapter (no session, no key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from services.enricher.cache import ProviderCache, fingerprint
from services.enricher.draft import LeadDraft
from services.enricher.providers import ADAPTERS
from services.enricher.steps import run_local_steps
from services.enricher.waterfall import WaterfallResult, apply_answer, is_complete
from shared.credits import ProviderRecord
from shared.messages import Lead, ProviderAnswer

PEEK_CHUNK = 500  # fingerprints per cache query


class ProviderEstimate(msgspec.Struct, frozen=True, kw_only=True):
    calls: int  # leads it would be asked (expected)
    credits_expected: float


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    leads: int
    cached: int
    credits_expected: float
    credits_max: int
    by_provider: dict[str, ProviderEstimate]


class EstimateAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/jobs/enrich` with `"dry_run": true`: no job, no call."""

    estimate: Estimate


def _unbound(kind: str, method: str) -> Callable[[LeadDraft], Any]:
    function = getattr(ADAPTERS[kind], method)
    return lambda draft: function(None, draft)


async def estimate(
    leads: Sequence[Lead],
    tenant: str,
    providers: Sequence[tuple[str, str]],
    cache: ProviderCache,
    records: dict[str, ProviderRecord],
) -> Estimate:
    drafts = [run_local_steps(LeadDraft.of(lead)) for lead in leads]
    open_share = [0.0 if is_complete(d) else 1.0 for d in drafts]
    paid = [False] * len(drafts)
    by_provider: dict[str, ProviderEstimate] = {}
    credits_max = 0
    for name, kind in providers:
        query, can_help = _unbound(kind, "query"), _unbound(kind, "can_help")
        asking = [i for i, d in enumerate(drafts) if not is_complete(d) and can_help(d)]
        keys = [fingerprint(query(drafts[i])) for i in asking]
        cached: dict[str, ProviderAnswer] = {}
        for start in range(0, len(keys), PEEK_CHUNK):
            cached.update(await cache.peek_many(tenant, name, keys[start : start + PEEK_CHUNK]))
        record = records.get(name)
        price = record.credits_per_lead if record and record.credits_per_lead is not None else 1.0
        finds = record.emails / record.leads if record and record.leads else 0.0
        calls = expected = 0.0
        for i, key in zip(asking, keys, strict=True):
            answer = cached.get(key)
            if answer is not None:
                apply_answer(drafts[i], answer, WaterfallResult())
                continue
            paid[i] = True
            credits_max += 1
            calls += open_share[i]
            expected += open_share[i] * price
            open_share[i] *= 1.0 - finds
        by_provider[name] = ProviderEstimate(
            calls=round(calls), credits_expected=round(expected, 1)
        )
    return Estimate(
        leads=len(drafts),
        cached=sum(not p for p in paid),
        credits_expected=round(sum(p.credits_expected for p in by_provider.values()), 1),
        credits_max=credits_max,
        by_provider=by_provider,
    )
