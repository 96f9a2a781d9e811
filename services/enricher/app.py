"""The enricher service: consumes enrich tasks and publishes lead outcomes."""

from __future__ import annotations

from pathlib import Path

from services.enricher.cache import ProviderCache
from services.enricher.config import EnricherSettings
from services.enricher.handlers import EnrichHandler, give_up, split_task
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers import build_provider
from services.enricher.waterfall import Waterfall
from shared.config import CommonSettings
from shared.messages import EnrichTask
from shared.store import is_postgres_url
from shared.supervise import Supervised, supervise
from shared.worker import WorkerRuntime, WorkerSpec

KIND = "enrich"


class EnricherService:
    def __init__(self, settings: EnricherSettings) -> None:
        self.settings = settings
        spec = WorkerSpec(
            kind=KIND,
            message_type=EnrichTask,
            settings=settings.worker,
            give_up=give_up,
            split=split_task,
        )
        self.runtime = WorkerRuntime(settings.common, spec)
        self.cache = ProviderCache(cache_target(settings.common), settings.provider_cache_ttl_s)
        self.purge: Supervised | None = None

    async def start(self) -> None:
        await self.cache.open()
        runtime = self.runtime
        # Before the control stream is read: every deletion in its history is applied.
        runtime.control.on_deleted(self.cache.job_deleted)
        self.purge = supervise("cache-purge", self.cache.run_purge)
        session = runtime.http_session()
        metrics = ProviderMetrics(runtime.metrics)
        providers = [
            build_provider(p, session, runtime.control, metrics) for p in self.settings.providers
        ]
        handler = EnrichHandler(
            Waterfall(providers, self.cache, metrics), self.settings.fault_crash_on
        )
        await runtime.start(handler)

    async def stop(self) -> None:
        await self.runtime.stop()
        if self.purge is not None:
            await self.purge.stop()
        await self.cache.close()


def cache_target(common: CommonSettings) -> Path | str:
    """The provider cache shares a PostgreSQL store (every machine's enrichers see one
    cache); beside an SQLite store it is a file of its own, not to contend for its lock."""
    if is_postgres_url(common.store_url):
        return common.store_url
    return common.data_dir / "provider-cache.db"
