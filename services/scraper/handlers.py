"""What the scraper does with one page task: fetch, publish the leads, hand on the cursor.

Everything for a page goes out in one confirmed batch before the task is acked: the
page's leads (and, for `enrich: true`, their enrich tasks, so enrichment starts while the
scrape goes on) and the task for the next page. A crash before the ack fetches that one
page again; pages before it are never fetched again, and their leads keep their ids.

A source account in cooldown, or over its request rate, is not waited on while holding
the task: the handler hands the page back as a `Retry(later=True)`, which the consumer
(shared/consumer.py) sends through the broker's delay tier without spending an attempt,
to come back when the account may be called again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import msgspec
from prometheus_client import Counter

from services.scraper.sources.base import (
    AccountCoolingDown,
    AccountOverRate,
    Page,
    Source,
    SourceRateLimited,
    SourceRejected,
    SourceUnavailable,
)
from shared.broker import Outgoing, Publish
from shared.consumer import Delivery, Handled, Retry
from shared.errors import PermanentError
from shared.health import Metrics
from shared.messages import JobCoolingDown, JobFailed, LeadsScraped, ScrapeTask
from shared.tasks import enrich_tasks


class ScrapeHandler:
    def __init__(
        self,
        sources: dict[str, Source],
        enrich_batch_size: int,
        metrics: Metrics,
    ) -> None:
        self.requests = Counter(
            "leadflow_source_requests_total",
            "Requests to lead sources, by outcome (ok, rate_limited, unavailable, rejected).",
            ["source", "outcome"],
            registry=metrics.registry,
        )
        self.sources = sources
        self.enrich_batch_size = enrich_batch_size

    async def __call__(self, task: ScrapeTask, delivery: Delivery) -> Handled[ScrapeTask]:
        source = self.sources.get(task.source)
        if source is None:
            raise PermanentError(f"no source named {task.source!r} is configured")
        if not task.account:
            task = msgspec.structs.replace(task, account=pick(source.accounts, task.job_id))
        gate = source.gate(task.account)
        try:
            turn = await gate.wait_turn(AccountCoolingDown, AccountOverRate)
        except AccountCoolingDown as e:
            return later(task, e.retry_after_s or 0.0, "cooling down", cooling=True)
        except AccountOverRate as e:
            why = "over the account's request rate"
            return later(task, e.retry_after_s or 0.0, why, cooling=False)
        requests = self.requests
        try:
            page = await gate.send(
                turn, source.fetch(task.account, task.query, task.cursor, task.job_id)
            )
        except SourceRateLimited as e:
            requests.labels(source=source.name, outcome="rate_limited").inc()
            pause = await gate.cool_down(e.retry_after_s)
            return later(task, pause, str(e), cooling=True)
        except SourceUnavailable:
            requests.labels(source=source.name, outcome="unavailable").inc()
            raise
        except SourceRejected:
            requests.labels(source=source.name, outcome="rejected").inc()
            raise
        requests.labels(source=source.name, outcome="ok").inc()
        return Handled(publish=self.page_done(task, delivery, page))

    def page_done(self, task: ScrapeTask, delivery: Delivery, page: Page) -> list[Outgoing]:
        leads = page.leads[: max(0, task.max_leads - task.scraped)]
        scraped = task.scraped + len(leads)
        more = bool(page.next_cursor) and task.page < task.max_pages and scraped < task.max_leads
        job_id, tenant = task.job_id, task.tenant
        event = LeadsScraped(
            job_id=job_id,
            tenant=tenant,
            page=task.page,
            leads=leads,
            enrich=task.enrich,
            final=not more,
            total=None if more else scraped,
            only_new=task.only_new,
        )
        out: list[Outgoing] = [Publish(event, priority=delivery.priority)]
        if task.enrich and not task.only_new:
            out.extend(
                enrich_tasks(
                    job_id,
                    tenant,
                    leads,
                    self.enrich_batch_size,
                    delivery.priority,
                    task.email_policy,
                )
            )
        if more:
            following = msgspec.structs.replace(
                task, page=task.page + 1, cursor=page.next_cursor, scraped=scraped
            )
            out.append(Publish(following, priority=delivery.priority))
        return out


def later(task: ScrapeTask, delay_s: float, why: str, *, cooling: bool) -> Handled[ScrapeTask]:
    """The same page again after `delay_s` (not an attempt used up); a cooldown is
    shown on the job."""
    notices: list[Outgoing] = []
    if cooling:
        until = time.time() + delay_s
        notices.append(Publish(JobCoolingDown(job_id=task.job_id, tenant=task.tenant, until=until)))
    return Handled(publish=notices, retries=[Retry(task, why, after_s=delay_s, later=True)])


def pick(accounts: Sequence[str], job_id: str) -> str:
    """The account a job uses for all its pages (spread over accounts by job)."""
    digest = hashlib.sha256(job_id.encode()).digest()
    return accounts[int.from_bytes(digest[:4], "big") % len(accounts)]


def give_up(task: ScrapeTask, reason: str) -> Sequence[Outgoing]:
    """A page failed for good: the job cannot complete, so it fails with the reason."""
    why = f"page {task.page} of source {task.source} failed: {reason}"
    return [Publish(JobFailed(job_id=task.job_id, tenant=task.tenant, reason=why))]
