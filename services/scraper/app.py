"""The scraper service: consumes scrape page tasks and publishes scraped leads.

Source accounts' allowances are kept in the status store (shared/limits.py), so every
scraper process shares each account's windows.
"""

from __future__ import annotations

from services.scraper.config import ScraperSettings
from services.scraper.handlers import ScrapeHandler, give_up
from services.scraper.sources.base import Source
from services.scraper.sources.http import SearchApiSource
from shared.limits import StoreLimits
from shared.messages import ScrapeTask
from shared.store import Store
from shared.worker import WorkerRuntime, WorkerSpec

KIND = "scrape"


class ScraperService:
    def __init__(self, settings: ScraperSettings) -> None:
        self.settings = settings
        spec = WorkerSpec(
            kind=KIND, message_type=ScrapeTask, settings=settings.worker, give_up=give_up
        )
        self.runtime = WorkerRuntime(settings.common, spec)
        # Its only writes are allowances: losing the last ones on power loss costs a turn.
        self.store = Store(settings.common.store_url, durable=False)

    async def start(self) -> None:
        await self.store.open()
        limits = StoreLimits(self.store)
        session = self.runtime.http_session()
        sources: dict[str, Source] = {
            s.name: SearchApiSource(s, session, self.runtime.control, limits=limits)
            for s in self.settings.sources
        }
        handler = ScrapeHandler(sources, self.settings.task_batch_size, self.runtime.metrics)
        await self.runtime.start(handler)

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.store.close()
