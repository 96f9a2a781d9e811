"""What the enricher does with an enrich task: local steps, waterfall, outcomes.

Each lead ends one of three ways: enriched; failed (a provider rejected it and nobody
else completed it); or, when providers were unavailable, waiting: handed back to the
consumer as a `Retry` of a smaller task with the answers obtained so far. Leads that only
met providers saying "later" (429, cooldown, a spent key window) go in one retry that
spends no attempt; leads that met a failure possibly about the request (5xx, timeout,
malformed answer) in another that does. What a retry costs, and what happens when the
attempts are spent (the leads fail with the providers' errors as their reason and the
task is parked in the dead-letter queue, replayable once the providers are back), is the
consumer's decision: shared/consumer.py. A lead whose job's credit budget stopped its
waterfall is parked in the store with its answers so far (services/enricher/spending.py),
until the job is resumed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import msgspec

from services.enricher.draft import LeadDraft
from services.enricher.faults import crash_if_poisoned
from services.enricher.spending import Spending
from services.enricher.steps import run_final_steps, run_local_steps
from services.enricher.waterfall import Waterfall, WaterfallResult
from shared.broker import Outgoing, Publish
from shared.consumer import Delivery, Handled, Retry
from shared.credits import PAUSE_REASONS
from shared.jobs import DEFAULT_EMAIL_POLICY, EMAIL_POLICIES, EmailPolicy
from shared.messages import (
    EnrichTask,
    LeadOutcomes,
    LeadsEnriched,
    LeadsFailed,
    Message,
    ProviderAnswer,
    ResultLead,
    UsageRecorded,
)


@dataclass
class Waiting:
    """Leads waiting on providers, retried together."""

    drafts: list[LeadDraft] = field(default_factory=list)
    results: list[WaterfallResult] = field(default_factory=list)

    def add(self, draft: LeadDraft, result: WaterfallResult) -> None:
        self.drafts.append(draft)
        self.results.append(result)


@dataclass
class Sorted:
    enriched: list[ResultLead] = field(default_factory=list)
    failed: list[ResultLead] = field(default_factory=list)
    # Waiting because a provider said "later" only, or because of a failure that may be
    # about the request (which spends an attempt).
    later: Waiting = field(default_factory=Waiting)
    about_request: Waiting = field(default_factory=Waiting)
    # Stopped by the job's (or tenant's) credit budget: parked until the job is resumed.
    paused: Waiting = field(default_factory=Waiting)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, draft: LeadDraft, result: WaterfallResult) -> None:
        calls = self.calls
        for provider, n in result.calls.items():
            calls[provider] = calls.get(provider, 0) + n
        if result.paused in PAUSE_REASONS:
            self.paused.add(draft, result)
        elif result.paused is not None:  # the job stopped meanwhile: nothing more is asked
            reason = f"not asked: {result.paused}"
            self.failed.append(run_final_steps(draft).result("failed", reason))
        elif result.errors:
            (self.about_request if result.about_request else self.later).add(draft, result)
        elif result.rejections:
            reason = "rejected by providers: " + "; ".join(result.rejections)
            self.failed.append(run_final_steps(draft).result("failed", reason))
        else:
            self.enriched.append(run_final_steps(draft).result())


class EnrichHandler:
    def __init__(
        self, waterfall: Waterfall, crash_on: str | None = None, spending: Spending | None = None
    ) -> None:
        self.waterfall = waterfall
        self.crash_on = crash_on
        self.spending = spending

    async def __call__(self, task: EnrichTask, delivery: Delivery) -> Handled[EnrichTask]:
        crash_if_poisoned(task.leads, self.crash_on)
        drafts = [run_local_steps(LeadDraft.of(lead)) for lead in task.leads]
        policy = task.email_policy if task.email_policy in EMAIL_POLICIES else DEFAULT_EMAIL_POLICY
        results = await self.waterfall.run(
            drafts, task.answers, task.job_id, task.tenant, cast(EmailPolicy, policy)
        )
        outcome = Sorted()
        for draft, result in zip(drafts, results, strict=True):
            outcome.add(draft, result)
        retries = [
            retry_of(task, delivery, waiting, later=later)
            for waiting, later in ((outcome.later, True), (outcome.about_request, False))
            if waiting.drafts
        ]
        if outcome.paused.drafts:
            retries += await self.hold(task, outcome.paused)
        return Handled(publish=events(task, delivery, outcome), retries=retries)

    async def hold(self, task: EnrichTask, paused: Waiting) -> list[Retry[EnrichTask]]:
        """The leads a budget paused: parked in the store until the job is resumed; if it
        was resumed meanwhile, back through the broker at once (a budget spends no attempt)."""
        held = EnrichTask(
            job_id=task.job_id,
            tenant=task.tenant,
            leads=[draft.lead for draft in paused.drafts],
            answers={
                draft.id: list(result.answers.values())
                for draft, result in zip(paused.drafts, paused.results, strict=True)
            },
            email_policy=task.email_policy,
        )
        if self.spending is not None and await self.spending.park(held):
            return []
        return [Retry(held, "the job was resumed while its leads were parked", 1.0, later=True)]


def events(task: EnrichTask, delivery: Delivery, outcome: Sorted) -> list[Outgoing]:
    job_id, tenant = task.job_id, task.tenant
    # The paid calls ride on the first event; a task with no outcome yet reports them
    # on their own. Each is counted once by its event id.
    calls = dict(outcome.calls)
    events: list[Message] = []
    if outcome.enriched:
        events.append(LeadsEnriched(job_id=job_id, tenant=tenant, leads=outcome.enriched))
    if outcome.failed:
        events.append(LeadsFailed(job_id=job_id, tenant=tenant, leads=outcome.failed))
    if events and calls:
        first = events[0]
        assert isinstance(first, LeadOutcomes)
        events[0] = msgspec.structs.replace(first, provider_calls=calls, event_id=new_id())
    elif calls:
        events.append(
            UsageRecorded(job_id=job_id, tenant=tenant, provider_calls=calls, event_id=new_id())
        )
    return [Publish(event, priority=delivery.priority) for event in events]


def retry_of(
    task: EnrichTask, delivery: Delivery, waiting: Waiting, *, later: bool
) -> Retry[EnrichTask]:
    """The waiting leads, with their answers so far, and how they fail if given up."""
    answers: dict[str, list[ProviderAnswer]] = {}
    errors: list[str] = []
    failed: list[ResultLead] = []
    attempts = delivery.attempt + 1
    for draft, result in zip(waiting.drafts, waiting.results, strict=True):
        answers[draft.id] = list(result.answers.values())
        errors.extend(result.errors)
        reason = f"providers unavailable after {attempts} attempts: " + "; ".join(result.errors)
        failed.append(run_final_steps(draft).result("failed", reason))
    retry = EnrichTask(
        job_id=task.job_id,
        tenant=task.tenant,
        leads=[draft.lead for draft in waiting.drafts],
        answers=answers,
        email_policy=task.email_policy,
    )
    give_up = LeadsFailed(job_id=task.job_id, tenant=task.tenant, leads=failed)
    return Retry(
        retry,
        "; ".join(dict.fromkeys(errors)),
        after_s=max((r.retry_after_s or 0.0 for r in waiting.results), default=0.0),
        later=later,
        if_given_up=[Publish(give_up, priority=delivery.priority)],
    )


def new_id() -> str:
    return uuid.uuid4().hex


def give_up(task: EnrichTask, reason: str) -> Sequence[Outgoing]:
    """The task is being dead-lettered: its leads still get an outcome, so the job completes."""
    leads = [LeadDraft.of(lead).result("failed", f"dead-lettered: {reason}") for lead in task.leads]
    return [Publish(LeadsFailed(job_id=task.job_id, tenant=task.tenant, leads=leads))]


def split_task(task: EnrichTask) -> list[EnrichTask]:
    """One task per lead, each with its own earlier answers (to isolate a poison lead)."""
    return [
        EnrichTask(
            job_id=task.job_id,
            tenant=task.tenant,
            leads=[lead],
            answers={lead.id: task.answers[lead.id]} if lead.id in task.answers else {},
            email_policy=task.email_policy,
        )
        for lead in task.leads
    ]
