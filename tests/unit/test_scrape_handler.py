"""The scraper's handler under the task consumer, on the in-memory broker: a page's leads,
its enrich tasks and the next page go out together; a source that says "later" costs no
attempt; a failing source spends them; a refusing one fails the job at once."""

from __future__ import annotations

import msgspec

from services.scraper.handlers import ScrapeHandler, give_up
from services.scraper.sources.base import (
    Page,
    SourceRejected,
    SourceUnavailable,
)
from shared.broker import ATTEMPT_HEADER, Delayed, Publish
from shared.health import Metrics
from shared.messages import EnrichTask, JobCoolingDown, JobFailed, Lead, LeadsScraped, ScrapeTask
from tests.fakebroker import FakeBroker, task_consumer
from tests.unit.test_gate import FakeCooldowns, ScriptedSource, page_task, source_settings


class Pages(ScriptedSource):
    """Two pages of two leads each (unless told to fail)."""

    def __init__(self) -> None:
        super().__init__(source_settings(), FakeCooldowns())

    def page(self, cursor: str | None) -> Page:
        leads = [Lead(id=f"{cursor or 'p1'}-{i}") for i in range(2)]
        return Page(leads=leads, next_cursor=None if cursor else "p2")


def scrape() -> ScrapeTask:
    return msgspec.structs.replace(page_task(), max_pages=5, max_leads=100, enrich=True)


async def started(source: Pages) -> FakeBroker:
    broker = FakeBroker()
    handler = ScrapeHandler({"sandbox": source}, 25, Metrics())
    await task_consumer(broker, "scrape", ScrapeTask, handler, give_up=give_up, max_attempts=3)
    return broker


async def test_a_page_its_enrich_tasks_and_the_next_page_go_out_together() -> None:
    source = Pages()
    broker = await started(source)
    message = await broker.deliver(broker.lane("scrape"), broker.message(scrape()))
    scraped, enrich, following = (p.item.message for p in broker.taken())
    assert isinstance(scraped, LeadsScraped)
    assert [lead.id for lead in scraped.leads] == ["p1-0", "p1-1"]
    assert not scraped.final
    assert isinstance(enrich, EnrichTask)
    assert [lead.id for lead in enrich.leads] == ["p1-0", "p1-1"]
    assert isinstance(following, ScrapeTask)
    assert (following.page, following.cursor, following.scraped) == (2, "p2", 2)
    assert message.settled == ["ack"]


async def test_a_rate_limited_source_never_spends_an_attempt() -> None:
    source = Pages()
    source.rate_limited = 5.0
    broker = await started(source)
    message = broker.message(scrape())
    for _ in range(6):
        await broker.deliver(broker.lane("scrape"), message)
        published = broker.taken()
        [retry] = [p for p in published if isinstance(p.item, Delayed)]
        assert retry.to.headers[ATTEMPT_HEADER] == 0
        assert any(isinstance(p.item.message, JobCoolingDown) for p in published)
        message = broker.as_delivered(retry)
    assert source.fetches == 1, "in the cooldown the source is not asked"
    assert broker.dead == []


async def test_a_failing_source_spends_attempts_then_fails_the_job() -> None:
    source = Pages()
    source.error = SourceUnavailable("sandbox: HTTP 503")
    broker = await started(source)
    message = broker.message(scrape())
    for attempt in (1, 2):
        await broker.deliver(broker.lane("scrape"), message)
        [retry] = broker.taken()
        assert retry.to.headers[ATTEMPT_HEADER] == attempt
        message = broker.as_delivered(retry)
    await broker.deliver(broker.lane("scrape"), message)
    [failed] = broker.taken()
    assert isinstance(failed.item, Publish)
    assert isinstance(failed.item.message, JobFailed)
    assert "page 1 of source sandbox failed" in failed.item.message.reason
    assert len(broker.dead) == 1


async def test_a_refused_query_fails_the_job_at_once() -> None:
    source = Pages()
    source.error = SourceRejected("sandbox: HTTP 400 bad query")
    broker = await started(source)
    await broker.deliver(broker.lane("scrape"), broker.message(scrape()))
    [failed] = broker.taken()
    assert isinstance(failed.item.message, JobFailed)
    assert source.fetches == 1
    assert len(broker.dead) == 1
