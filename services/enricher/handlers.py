"""What the enricher does with an enrich task: local steps, waterfall, outcomes.

Each lead ends one of three ways: enriched; failed (a provider rejected it and nobody
else completed it); or, when providers were unavailable, back to the broker in a smaller
task, delayed, with the answers obtained so far. A lead still waiting on providers after
the last attempt fails with the providers' errors as its reason and is parked in the
dead-letter queue, from where it can be replayed once the providers are back.
A lead whose job's credit budget stopped its waterfall is parked in the store with its
answers so far (services/enricher/spending.py), until the job is resumed.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from services.enricher.draft import LeadDraft
from services.enricher.faults import crash_if_poisoned
from services.enricher.spending import Spending
from services.enricher.steps import run_final_steps, run_local_steps
from services.enricher.waterfall import Waterfall, WaterfallResult
from shared.broker import ERROR_HEADER, Outgoing
from shared.consumer import Delivery, RetryPolicy
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
class Sorted:
    enriched: list[ResultLead] = field(default_factory=list)
    failed: list[ResultLead] = field(default_factory=list)
    waiting: list[LeadDraft] = field(default_factory=list)
    paused: list[LeadDraft] = field(default_factory=list)
    answers: dict[str, list[ProviderAnswer]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    retry_after_s: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)

    def add(
        self, draft: LeadDraft, result: WaterfallResult, last_attempt: bool, attempt: int
    ) -> None:
        self.calls.update(result.calls)
        if result.paused is not None:
            self.paused.append(draft)
            self.answers[draft.id] = list(result.answers.values())
        elif result.errors:
            self.waiting.append(draft)
            self.answers[draft.id] = list(result.answers.values())
            self.errors.extend(result.errors)
            self.retry_after_s = max(self.retry_after_s, result.retry_after_s or 0.0)
            if last_attempt:
                reason = f"providers unavailable after {attempt} attempts: " + "; ".join(
                    result.errors
                )
                self.failed.append(run_final_steps(draft).result("failed", reason))
        elif result.rejections:
            reason = "rejected by providers: " + "; ".join(result.rejections)
            self.failed.append(run_final_steps(draft).result("failed", reason))
        else:
            self.enriched.append(run_final_steps(draft).result())


class EnrichHandler:
    def __init__(
        self,
        waterfall: Waterfall,
        policy: RetryPolicy,
        dead_letter_key: str,
        crash_on: str | None = None,
        spending: Spending | None = None,
    ) -> None:
        self.spending = spending
        self.waterfall = waterfall
        self.policy = policy
        self.dead_letter_key = dead_letter_key
        self.crash_on = crash_on

    async def __call__(self, task: EnrichTask, delivery: Delivery) -> Sequence[Outgoing]:
        crash_if_poisoned(task.leads, self.crash_on)
        drafts = [run_local_steps(LeadDraft.of(lead)) for lead in task.leads]
        results = await self.waterfall.run(drafts, task.answers, task.job_id, task.tenant)
        attempt = delivery.attempt + 1
        last_attempt = attempt >= self.policy.max_attempts
        outcome = Sorted()
        for draft, result in zip(drafts, results, strict=True):
            outcome.add(draft, result, last_attempt, attempt)
        out = self.messages(task, delivery, outcome, last_attempt)
        if outcome.paused:
            out.extend(await self.hold(task, delivery, outcome))
        return out

    async def hold(self, task: EnrichTask, delivery: Delivery, outcome: Sorted) -> list[Outgoing]:
        """The leads a budget paused: parked in the store until the job is resumed; if it
        was resumed meanwhile, back to the broker at once (a budget spends no attempt)."""
        held = EnrichTask(
            job_id=task.job_id,
            tenant=task.tenant,
            leads=[draft.lead for draft in outcome.paused],
            answers={d.id: outcome.answers[d.id] for d in outcome.paused},
        )
        if self.spending is not None and await self.spending.park(held):
            return []
        return [
            Outgoing(
                held, priority=delivery.priority, attempt=delivery.attempt, retry=True, delay_s=1.0
            )
        ]

    def messages(
        self, task: EnrichTask, delivery: Delivery, outcome: Sorted, last_attempt: bool
    ) -> list[Outgoing]:
        job_id, tenant, priority = task.job_id, task.tenant, delivery.priority
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
        out = [Outgoing(event, priority=priority) for event in events]
        if outcome.waiting:
            out.append(self.waiting_task(task, delivery, outcome, last_attempt))
        return out

    def waiting_task(
        self, task: EnrichTask, delivery: Delivery, outcome: Sorted, last_attempt: bool
    ) -> Outgoing:
        """The leads still waiting on providers: retried later, or parked after the last try."""
        waiting = EnrichTask(
            job_id=task.job_id,
            tenant=task.tenant,
            leads=[draft.lead for draft in outcome.waiting],
            answers={d.id: outcome.answers[d.id] for d in outcome.waiting},
        )
        headers = {ERROR_HEADER: "; ".join(dict.fromkeys(outcome.errors))}
        if last_attempt:
            return Outgoing(
                waiting,
                priority=delivery.priority,
                attempt=delivery.attempt,
                dead_letter_of=self.dead_letter_key,
                headers=headers,
            )
        return Outgoing(
            waiting,
            priority=delivery.priority,
            attempt=delivery.attempt + 1,
            retry=True,
            delay_s=max(outcome.retry_after_s, self.policy.backoff_s(delivery.attempt + 1)),
            headers=headers,
        )


def new_id() -> str:
    return uuid.uuid4().hex


def give_up(task: EnrichTask, reason: str) -> Sequence[Outgoing]:
    """The task is being dead-lettered: its leads still get an outcome, so the job completes."""
    leads = [LeadDraft.of(lead).result("failed", f"dead-lettered: {reason}") for lead in task.leads]
    return [Outgoing(LeadsFailed(job_id=task.job_id, tenant=task.tenant, leads=leads))]


def split_task(task: EnrichTask) -> list[EnrichTask]:
    """One task per lead, each with its own earlier answers (to isolate a poison lead)."""
    return [
        EnrichTask(
            job_id=task.job_id,
            tenant=task.tenant,
            leads=[lead],
            answers={lead.id: task.answers[lead.id]} if lead.id in task.answers else {},
        )
        for lead in task.leads
    ]
