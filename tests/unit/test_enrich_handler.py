"""The enricher's handler with scripted providers (our own `Provider` interface), a real
provider cache on a temporary file, and the task consumer on the in-memory broker: which
leads are published, which wait, and which of those spend an attempt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from services.enricher.cache import ProviderCache
from services.enricher.draft import LeadDraft
from services.enricher.handlers import EnrichHandler, give_up, split_task
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    Reply,
)
from services.enricher.waterfall import Waterfall
from shared.broker import ATTEMPT_HEADER, DeadLetter, Delayed, Publish
from shared.consumer import Delivery
from shared.health import Metrics
from shared.messages import EnrichTask, Lead, LeadsEnriched, LeadsFailed
from tests.fakebroker import FakeBroker, task_consumer

FOUND = {"email": "ada@engines.io", "email_status": "valid", "company_domain": "engines.io"}


@dataclass
class ScriptedProvider:
    """Answers each lead by its id: found, or the reply scripted for it."""

    name: str = "alpha"
    replies: dict[str, Reply] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    per_request: int = 100

    def can_help(self, draft: LeadDraft) -> bool:
        return True

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        return {"id": draft.id}

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        self.asked.extend(d.id for d in drafts)
        return [self.replies.get(d.id, dict(FOUND)) for d in drafts]


def handler(provider: ScriptedProvider, cache: ProviderCache) -> EnrichHandler:
    return EnrichHandler(Waterfall([provider], cache, ProviderMetrics(Metrics())))


def task(*ids: str) -> EnrichTask:
    leads = [Lead(id=i, full_name=f"Person {i}", company="Engines") for i in ids]
    return EnrichTask(job_id="job-1", tenant="acme", leads=leads)


FIRST = Delivery(attempt=0, redelivered=False)


async def test_found_and_rejected_leads_are_published(cache: ProviderCache) -> None:
    alpha = ScriptedProvider(replies={"b": ProviderRejected("alpha: HTTP 422 bad name")})
    handled = await handler(alpha, cache)(task("a", "b"), FIRST)
    assert handled.retries == []
    enriched, failed = (p.message for p in handled.publish)
    assert isinstance(enriched, LeadsEnriched)
    assert isinstance(failed, LeadsFailed)
    assert [lead.id for lead in enriched.leads] == ["a"]
    assert enriched.provider_calls == {"alpha": 2}, "the paid calls ride on the first event"
    assert failed.leads[0].error == "rejected by providers: alpha: HTTP 422 bad name"


@pytest.mark.parametrize(
    ("reply", "later"),
    [
        (ProviderUnavailable("alpha: HTTP 429", retry_after_s=1.0, status=429), True),
        (ProviderRateLimited("alpha: cooling down for 0.4s", retry_after_s=0.4), True),
        (ProviderUnavailable("alpha: HTTP 503", status=503), False),
        (ProviderUnavailable("alpha: timed out after 10s"), False),
        (ProviderUnavailable("alpha: malformed reply (truncated)"), False),
    ],
)
async def test_only_failures_that_may_be_about_the_request_spend_an_attempt(
    cache: ProviderCache, reply: ProviderUnavailable, later: bool
) -> None:
    alpha = ScriptedProvider(replies={"b": reply})
    handled = await handler(alpha, cache)(task("a", "b"), FIRST)
    [retry] = handled.retries
    assert retry.later is later
    assert [lead.id for lead in retry.message.leads] == ["b"]
    assert retry.reason == str(reply)
    [given_up] = [p.message for p in retry.if_given_up]
    assert isinstance(given_up, LeadsFailed)
    assert given_up.leads[0].error == f"providers unavailable after 1 attempts: {reply}"


async def test_a_bulk_answer_splits_its_leads_by_what_each_met(cache: ProviderCache) -> None:
    throttled = ProviderUnavailable("alpha: HTTP 429", retry_after_s=2.0, status=429)
    alpha = ScriptedProvider(replies={"a": throttled, "b": ProviderUnavailable("alpha: HTTP 503")})
    beta = ScriptedProvider("beta", replies={"a": throttled, "b": throttled, "c": throttled})
    waterfall = Waterfall([alpha, beta], cache, ProviderMetrics(Metrics()))
    handled = await EnrichHandler(waterfall)(task("a", "b", "c"), FIRST)
    later, spent = handled.retries
    assert (later.later, spent.later) == (True, False)
    assert [lead.id for lead in later.message.leads] == ["a"]
    assert [lead.id for lead in spent.message.leads] == ["b"]
    assert later.after_s == 2.0
    # What was found stays with the lead, so a retry does not pay for it again.
    assert [a.provider for a in spent.message.answers["b"]] == []
    assert handled.publish[0].message.leads[0].id == "c"  # type: ignore[attr-defined]


async def test_answers_so_far_travel_with_the_retry(cache: ProviderCache) -> None:
    alpha = ScriptedProvider(replies={"a": {"company_domain": "engines.io"}})
    beta = ScriptedProvider("beta", replies={"a": ProviderUnavailable("beta: HTTP 503")})
    waterfall = Waterfall([alpha, beta], cache, ProviderMetrics(Metrics()))
    handled = await EnrichHandler(waterfall)(task("a"), FIRST)
    [retry] = handled.retries
    [answer] = retry.message.answers["a"]
    assert answer.provider == "alpha"
    assert answer.found == {"company_domain": "engines.io"}


async def test_through_the_consumer_a_storm_of_429s_never_fails_a_lead(
    cache: ProviderCache,
) -> None:
    """Ten rounds of 429 with three attempts allowed, then one 503 too many: the lead waits
    out every 429 and fails only after its attempts on 503s are spent."""
    broker = FakeBroker()
    alpha = ScriptedProvider()
    enrich = handler(alpha, cache)
    await task_consumer(broker, "enrich", EnrichTask, enrich, give_up=give_up, split=split_task)
    lane = broker.lane("enrich")

    message = broker.message(task("a"))
    for _ in range(10):
        alpha.replies["a"] = ProviderUnavailable("alpha: HTTP 429", retry_after_s=1, status=429)
        await broker.deliver(lane, message)
        [retry] = broker.taken()
        assert isinstance(retry.item, Delayed)
        assert retry.to.headers[ATTEMPT_HEADER] == 0
        message = broker.as_delivered(retry)

    alpha.replies["a"] = ProviderUnavailable("alpha: HTTP 503", status=503)
    for attempt in (1, 2):
        await broker.deliver(lane, message)
        [retry] = broker.taken()
        assert retry.to.headers[ATTEMPT_HEADER] == attempt
        message = broker.as_delivered(retry)
    await broker.deliver(lane, message)
    failed, parked = broker.taken()
    assert isinstance(failed.item, Publish)
    assert isinstance(failed.item.message, LeadsFailed)
    assert failed.item.message.leads[0].error == (
        "providers unavailable after 3 attempts: alpha: HTTP 503"
    )
    assert isinstance(parked.item, DeadLetter)
    assert len(alpha.asked) == 13
