"""What the enricher does with an enrich task: local steps, waterfall, outcomes.

Leads that providers could not serve right now go back to the broker as a smaller task,
delayed, with the answers obtained so far; after the last attempt they fail with the
providers' errors as the reason. Everything else becomes `lead.enriched`.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.enricher.draft import LeadDraft
from services.enricher.steps import run_final_steps, run_local_steps
from services.enricher.waterfall import Waterfall
from shared.broker import Outgoing
from shared.consumer import Delivery, RetryPolicy
from shared.messages import EnrichTask, LeadsEnriched, LeadsFailed, ProviderAnswer, ResultLead


class EnrichHandler:
    def __init__(self, waterfall: Waterfall, policy: RetryPolicy, queue: str) -> None:
        self.waterfall = waterfall
        self.policy = policy
        self.queue = queue

    async def __call__(self, task: EnrichTask, delivery: Delivery) -> Sequence[Outgoing]:
        drafts = [run_local_steps(LeadDraft.of(lead)) for lead in task.leads]
        results = await self.waterfall.run(drafts, task.answers, task.job_id)
        last_attempt = delivery.attempt + 1 >= self.policy.max_attempts
        enriched: list[ResultLead] = []
        failed: list[ResultLead] = []
        retry: list[LeadDraft] = []
        answers: dict[str, list[ProviderAnswer]] = {}
        retry_after_s = 0.0
        for draft, result in zip(drafts, results, strict=True):
            if not result.errors:
                enriched.append(run_final_steps(draft).result())
            elif last_attempt:
                reason = f"providers unavailable after {delivery.attempt + 1} attempts: "
                failed.append(
                    run_final_steps(draft).result("failed", reason + "; ".join(result.errors))
                )
            else:
                retry.append(draft)
                answers[draft.id] = result.answers
                retry_after_s = max(retry_after_s, result.retry_after_s or 0.0)
        out: list[Outgoing] = []
        job_id, tenant = task.job_id, task.tenant
        if enriched:
            out.append(
                Outgoing(
                    LeadsEnriched(job_id=job_id, tenant=tenant, leads=enriched),
                    priority=delivery.priority,
                )
            )
        if failed:
            out.append(
                Outgoing(
                    LeadsFailed(job_id=job_id, tenant=tenant, leads=failed),
                    priority=delivery.priority,
                )
            )
        if retry:
            out.append(
                Outgoing(
                    EnrichTask(
                        job_id=job_id,
                        tenant=tenant,
                        leads=[d.lead for d in retry],
                        answers=answers,
                    ),
                    priority=delivery.priority,
                    attempt=delivery.attempt + 1,
                    retry_of=self.queue,
                    delay_s=max(retry_after_s, self.policy.backoff_s(delivery.attempt + 1)),
                )
            )
        return out


def give_up(task: EnrichTask, reason: str) -> Sequence[Outgoing]:
    """The task is being dead-lettered: its leads still get an outcome, so the job completes."""
    leads = [LeadDraft.of(lead).result("failed", f"dead-lettered: {reason}") for lead in task.leads]
    return [Outgoing(LeadsFailed(job_id=task.job_id, tenant=task.tenant, leads=leads))]
