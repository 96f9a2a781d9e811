"""The provider waterfall: ask providers in order until the wanted fields are found.

It runs a task's leads together, provider by provider: each provider is asked about all
the leads still incomplete that it can help with, in as few requests as it allows (a bulk
lookup where the provider has one), so a task of 25 leads costs a couple of HTTP calls,
not fifty. Each request is paid for and written down on its own (`_ask_unit`).

A provider's answer, once obtained, is never paid for again for that lead: it travels
with the lead across retries (`ProviderAnswer`) and is kept in the provider cache, which
a redelivered task (after a crash) finds. A provider that is unavailable is skipped for
now; if a lead ends incomplete because of it, the lead is retried later. A provider that
rejects a lead (4xx) is not asked again; if nobody completes the lead, it fails with the
rejection as its reason. A provider parked (bad key, out of credits) cannot help: that counts
like a rejection for the lead, but is no answer about it and is not cached.

A found email ends the search for an email only when the job's `email_policy` accepts its
status (services/enricher/emailpolicy.py); one whose status is missing or `unknown` is
first checked by the verifier (`LEADFLOW_VERIFIER`), whose verdict is paid once too: it
travels with the lead and is cached like a provider's answer.

Every paid call goes through `spending` (services/enricher/spending.py): credits reserved
before, settled after. When the job's or tenant's budget refuses a call, the waterfall
stops for this task: the leads still incomplete are marked `paused` (the handler parks them
with the answers obtained so far).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import msgspec
from opentelemetry.trace import Span

from services.enricher.cache import ProviderCache, fingerprint
from services.enricher.draft import LeadDraft
from services.enricher.emailpolicy import NEEDS_VERIFYING, Candidate, accepts, reject, take
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import (
    Provider,
    ProviderParked,
    ProviderRejected,
    ProviderUnavailable,
    Reply,
    Verification,
    Verifier,
    VerifyReply,
)
from services.enricher.spending import BudgetPaused, Spending
from services.enricher.steps.domain import normalise_domain
from shared import tracing
from shared.credits import Reservation
from shared.jobs import DEFAULT_EMAIL_POLICY, EmailPolicy
from shared.logging import get_logger
from shared.messages import ProviderAnswer

WANTED = ("email", "company_domain")
T = TypeVar("T")
log = get_logger(__name__)


class WaterfallResult:
    """What the waterfall got for one lead. A plain class with slots: one is made per lead,
    and literals are cheaper than a dataclass's default factories."""

    __slots__ = (
        "about_request",
        "answers",
        "calls",
        "errors",
        "paused",
        "rejections",
        "retry_after_s",
    )

    def __init__(self, answers: dict[str, ProviderAnswer] | None = None) -> None:
        self.answers: dict[str, ProviderAnswer] = {} if answers is None else answers
        # Providers that could not answer now (retry later) and ones that refused the lead.
        self.errors: list[str] = []
        self.rejections: list[str] = []
        self.retry_after_s: float | None = None
        # Paid calls made for this lead now, by provider (answers from the cache cost
        # nothing).
        self.calls: dict[str, int] = {}
        # Why the job's budget stopped this lead's waterfall (it waits for the job's resume).
        self.paused: str | None = None
        # Whether an error may be about the request (5xx, timeout, malformed answer), not
        # only a provider saying "later" (429, cooldown): only then does the lead spend an
        # attempt.
        self.about_request = False

    def unavailable(self, error: ProviderUnavailable) -> None:
        self.errors.append(str(error))
        self.about_request = self.about_request or not error.later
        self.retry_after_s = max(error.retry_after_s or 0.0, self.retry_after_s or 0.0)


ToVerify = list[tuple[LeadDraft, WaterfallResult, Candidate]]


class Waterfall:
    def __init__(
        self,
        providers: Sequence[Provider],
        cache: ProviderCache,
        metrics: ProviderMetrics,
        verifier: Verifier | None = None,
        spending: Spending | None = None,
    ) -> None:
        self.providers = tuple(providers)
        self.cache = cache
        self.metrics = metrics
        self.verifier = verifier
        self.spending = spending

    async def run(
        self,
        drafts: Sequence[LeadDraft],
        prior: dict[str, list[ProviderAnswer]],
        job_id: str,
        tenant: str,
        email_policy: EmailPolicy = DEFAULT_EMAIL_POLICY,
    ) -> list[WaterfallResult]:
        results = [
            WaterfallResult(answers={a.provider: a for a in prior.get(d.id, [])}) for d in drafts
        ]
        verifying = self.verifier is not None
        for provider in self.providers:
            asking = []
            to_verify: ToVerify = []
            for draft, result in zip(drafts, results, strict=True):
                if is_complete(draft):
                    continue
                answer = result.answers.get(provider.name)
                if answer is not None:
                    pending = apply_answer(draft, answer, result, email_policy, verifying)
                    if pending is not None:
                        to_verify.append((draft, result, pending))
                elif provider.can_help(draft):
                    asking.append((draft, result))
            if asking:
                try:
                    to_verify += await self._ask(provider, asking, job_id, tenant, email_policy)
                except BudgetPaused as e:
                    return paused(drafts, results, e.reason)
            if to_verify:
                try:
                    await self._verify(to_verify, job_id, tenant, email_policy)
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
        email_policy: EmailPolicy,
    ) -> ToVerify:
        """Ask one provider about these leads (the cache first): one span of the job's trace."""
        with tracing.span(
            f"provider {provider.name}", provider=provider.name, job_id=job_id, leads=len(asking)
        ) as span:
            return await self._ask_provider(provider, asking, job_id, tenant, email_policy, span)

    async def _ask_provider(
        self,
        provider: Provider,
        asking: list[tuple[LeadDraft, WaterfallResult]],
        job_id: str,
        tenant: str,
        email_policy: EmailPolicy,
        span: Span,
    ) -> ToVerify:
        """Ask `provider` for the leads it has no answer for; the emails found that the
        verifier must check before the policy can judge them."""
        keys = [fingerprint(provider.query(draft)) for draft, _ in asking]
        cached = await self.cache.get_many(tenant, provider.name, keys, job_id=job_id)
        to_call = [(i, draft) for i, (draft, _) in enumerate(asking) if keys[i] not in cached]
        span.set_attributes({"cache_hits": len(asking) - len(to_call), "called": len(to_call)})
        if cached:
            self.metrics.calls.labels(provider=provider.name, outcome="cached").inc(
                len(asking) - len(to_call)
            )
        answered: dict[str, ProviderAnswer] = {}
        paused_by: str | None = None  # the budget that had room for only some leads
        if to_call:
            # One unit per HTTP request the provider makes, each written down (settled,
            # cached) the moment its answer is in, not when the task's slowest request is
            # back: a crash loses only the requests in flight, and the redelivered task,
            # finding the rest in the cache, asks only those again.
            size = max(1, provider.per_request)
            units = [to_call[i : i + size] for i in range(0, len(to_call), size)]
            replies: list[Reply] = []
            for unit_replies, unit_answered, unit_paused in await all_of(
                [self._ask_unit(provider, unit, keys, asking, job_id, tenant) for unit in units]
            ):
                replies += unit_replies
                answered.update(unit_answered)
                paused_by = paused_by or unit_paused
            span.set_attribute("outcome", outcome_of(replies))
        to_verify: ToVerify = []
        verifying = self.verifier is not None
        for (draft, result), key in zip(asking, keys, strict=True):
            answer = cached.get(key) or answered.get(key)
            if answer is not None:
                result.answers[provider.name] = answer
                pending = apply_answer(draft, answer, result, email_policy, verifying)
                if pending is not None:
                    to_verify.append((draft, result, pending))
        if paused_by is not None:
            raise BudgetPaused(job_id, paused_by)
        return to_verify

    async def _ask_unit(
        self,
        provider: Provider,
        unit: list[tuple[int, LeadDraft]],
        keys: list[str],
        asking: list[tuple[LeadDraft, WaterfallResult]],
        job_id: str,
        tenant: str,
    ) -> tuple[list[Reply], dict[str, ProviderAnswer], str | None]:
        """One request's worth of leads (`unit`, by index into `asking`): paid for, asked,
        and written down before this returns, also when it is cancelled once the answer is
        in. The replies, the answers to cache and why the budget paused the job, if so."""
        call: Reservation | None = None
        paused_by: str | None = None
        requests = [keys[i] for i, _ in unit]
        if self.spending is not None:
            try:
                call, paused_by = await self.spending.reserve(
                    provider.name, job_id, tenant, len(unit), requests
                )
            except BudgetPaused as e:
                return [], {}, e.reason
            unit, requests = unit[: call.leads], requests[: call.leads]
        replies = await provider.lookup_many([draft for _, draft in unit], job_id)
        answered = self._answered(provider.name, unit, asking, requests, replies)
        await asyncio.shield(
            self._write_down(provider.name, call, requests, replies, answered, job_id, tenant)
        )
        return replies, answered, paused_by

    def _answered(
        self,
        provider: str,
        unit: list[tuple[int, LeadDraft]],
        asking: list[tuple[LeadDraft, WaterfallResult]],
        requests: list[str],
        replies: Sequence[Reply],
    ) -> dict[str, ProviderAnswer]:
        """Each reply told to its lead's result; the answers worth caching, by request."""
        self.count_all(provider, replies)
        answered: dict[str, ProviderAnswer] = {}
        for (i, draft), request, reply in zip(unit, requests, replies, strict=True):
            result = asking[i][1]
            if isinstance(reply, ProviderUnavailable):
                result.unavailable(reply)
                continue
            if isinstance(reply, ProviderParked):
                # The account, not the lead, was refused: no paid call, nothing cached.
                result.rejections.append(str(reply))
                continue
            result.calls[provider] = result.calls.get(provider, 0) + 1
            if isinstance(reply, ProviderRejected):
                log.warning(
                    "provider.rejected", provider=provider, lead_id=draft.id, error=str(reply)
                )
                answered[request] = ProviderAnswer(provider=provider, rejected=str(reply))
            else:
                answered[request] = ProviderAnswer(provider=provider, found=reply)
        return answered

    async def _write_down(
        self,
        provider: str,
        call: Reservation | None,
        requests: list[str],
        replies: Sequence[Reply],
        answered: dict[str, ProviderAnswer],
        job_id: str,
        tenant: str,
    ) -> None:
        if call is not None and self.spending is not None:
            await self.spending.settle(call, requests, replies)
        await self.cache.put_many(tenant, provider, answered, job_id=job_id)

    async def _verify(
        self, to_verify: ToVerify, job_id: str, tenant: str, email_policy: EmailPolicy
    ) -> None:
        """The verifier's verdict on each email (carried with the lead, or cached, else
        asked), then the policy's judgement of it."""
        verifier = self.verifier
        assert verifier is not None
        kind = f"{verifier.name}#verify"
        keys = [fingerprint({"email": c.email}) for _, _, c in to_verify]
        cached = await self.cache.get_many(tenant, kind, keys, job_id=job_id)
        unknown = [
            (i, c)
            for i, (_, result, c) in enumerate(to_verify)
            if keys[i] not in cached and verdict_key(verifier.name, c) not in result.answers
        ]
        answered: dict[str, ProviderAnswer] = {}
        paused_by: str | None = None
        # One request per email, each verdict written down the moment it is in (as a
        # provider's answers are, `_ask_unit`).
        for i, verdict, unit_paused in await all_of(
            [
                self._verify_one(
                    verifier, kind, i, keys[i], to_verify, job_id, tenant, email_policy
                )
                for i, _ in unknown
            ]
        ):
            if verdict is not None:
                answered[keys[i]] = verdict
            paused_by = paused_by or unit_paused
        for i, (draft, result, candidate) in enumerate(to_verify):
            carried = result.answers.get(verdict_key(verifier.name, candidate))
            verdict = carried or cached.get(keys[i]) or answered.get(keys[i])
            if verdict is None:
                continue
            result.answers[verdict_key(verifier.name, candidate)] = verdict
            judge(draft, verified(candidate, verifier.name, verdict), email_policy)
        if paused_by is not None:
            raise BudgetPaused(job_id, paused_by)

    async def _verify_one(
        self,
        verifier: Verifier,
        kind: str,
        i: int,
        key: str,
        to_verify: ToVerify,
        job_id: str,
        tenant: str,
        email_policy: EmailPolicy,
    ) -> tuple[int, ProviderAnswer | None, str | None]:
        """The verifier's verdict on `to_verify[i]`'s email, paid for, asked and cached
        before this returns; with why the budget paused the job, if it did."""
        draft, result, candidate = to_verify[i]
        reply: VerifyReply | None
        paused_by: str | None = None
        if self.spending is None:
            reply = await verifier.verify(candidate.email, job_id)
        else:
            try:
                replies, paused_by = await self.spending.verify(
                    verifier, [candidate.email], job_id, tenant, [key]
                )
            except BudgetPaused as e:
                return i, None, e.reason
            reply = replies[0]
        if reply is None:
            return i, None, paused_by  # the budget left no room: verified after the resume
        self.count(verifier.name, reply)
        if isinstance(reply, ProviderUnavailable):
            result.unavailable(reply)  # judged on a later attempt
            return i, None, paused_by
        if isinstance(reply, ProviderParked):
            # No verdict about the address (and nothing to cache): judged as found.
            judge(draft, candidate, email_policy)
            return i, None, paused_by
        result.calls[verifier.name] = result.calls.get(verifier.name, 0) + 1
        verdict = verdict_answer(verifier.name, candidate, reply)
        await asyncio.shield(self.cache.put_many(tenant, kind, {key: verdict}, job_id=job_id))
        return i, verdict, paused_by

    def count(self, provider: str, reply: Reply | Verification) -> None:
        self.metrics.calls.labels(provider=provider, outcome=reply_outcome(reply)).inc()

    def count_all(self, provider: str, replies: Sequence[Reply]) -> None:
        """A call's replies in the metrics: one increment per outcome, not per lead."""
        for outcome, n in Counter(map(reply_outcome, replies)).items():
            self.metrics.calls.labels(provider=provider, outcome=outcome).inc(n)


def paused(
    drafts: Sequence[LeadDraft], results: list[WaterfallResult], reason: str
) -> list[WaterfallResult]:
    for draft, result in zip(drafts, results, strict=True):
        if not is_complete(draft):
            result.paused = reason
    return results


def apply_answer(
    draft: LeadDraft,
    answer: ProviderAnswer,
    result: WaterfallResult,
    email_policy: EmailPolicy = DEFAULT_EMAIL_POLICY,
    verifying: bool = False,
) -> Candidate | None:
    """Fill what the answer found; a refusal counts, from a retry or the cache too. A
    found email is taken or refused by the policy, or returned when the verifier must
    check it first."""
    if answer.rejected is not None:
        result.rejections.append(answer.rejected)
    found = answer.found
    domain = found.get("company_domain")
    if domain and not draft.get("company_domain"):
        draft.fill("company_domain", normalise_domain(domain), f"provider:{answer.provider}")
    candidate = Candidate.of(answer.provider, found)
    if candidate is None or draft.get("email"):
        return None
    if verifying and candidate.status in NEEDS_VERIFYING:
        return candidate
    judge(draft, candidate, email_policy)
    return None


def judge(draft: LeadDraft, candidate: Candidate, email_policy: EmailPolicy) -> None:
    if draft.get("email"):
        return  # another provider's email was accepted first
    if accepts(email_policy, candidate.status):
        take(draft, candidate)
    else:
        reject(draft, candidate)


def verdict_key(verifier: str, candidate: Candidate) -> str:
    """How a verdict travels among a lead's answers (by verifier and address)."""
    return f"verify:{verifier}:{candidate.email.lower()}"


def verdict_answer(
    verifier: str, candidate: Candidate, reply: Verification | ProviderRejected
) -> ProviderAnswer:
    key = verdict_key(verifier, candidate)
    if isinstance(reply, ProviderRejected):
        return ProviderAnswer(provider=key, rejected=str(reply))
    found = {"email": reply.email, "email_status": reply.status}
    if reply.raw_status:
        found["email_status_raw"] = reply.raw_status
    if reply.score is not None:
        found["email_score"] = str(reply.score)
    return ProviderAnswer(provider=key, found=found)


def verified(candidate: Candidate, verifier: str, verdict: ProviderAnswer) -> Candidate:
    """The candidate as the verifier judged it (unchanged when it could not say)."""
    if verdict.rejected is not None or not verdict.found.get("email_status"):
        return candidate
    found = verdict.found
    return msgspec.structs.replace(
        candidate,
        status=found["email_status"],
        raw_status=found.get("email_status_raw"),
        score=found.get("email_score") or candidate.score,
        verified_by=verifier,
    )


def is_complete(draft: LeadDraft) -> bool:
    return all(map(draft.get, WANTED))


def reply_outcome(reply: Reply | Verification) -> str:
    if isinstance(reply, ProviderUnavailable):
        return "unavailable"
    if isinstance(reply, ProviderRejected):
        return "rejected"
    if isinstance(reply, Verification):
        return "verified"
    return "found" if reply else "not_found"


def outcome_of(replies: Sequence[Reply]) -> str:
    """A provider call's outcome for its span: what most of its leads' replies were."""
    kinds = Counter(map(reply_outcome, replies))
    return kinds.most_common(1)[0][0] if kinds else "none"


async def all_of(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run these together, results in order; the first failure cancels the others (a
    unit's answer already in is still written down: `_ask_unit` shields that) and is
    raised as itself. One runs without a task of its own, the common case."""
    if len(calls) == 1:
        return [await calls[0]]
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
