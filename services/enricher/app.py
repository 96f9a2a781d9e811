"""The enricher service: consumes enrich tasks and publishes lead outcomes."""

from __future__ import annotations

from services.enricher.cache import CACHE_FILE, ProviderCache
from services.enricher.config import EnricherSettings
from services.enricher.handlers import EnrichHandler, give_up, split_task
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers import build_provider
from services.enricher.spending import Spending
from services.enricher.waterfall import Waterfall
from shared.messages import EnrichTask
from shared.store import Store
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
        self.cache = ProviderCache(
            settings.common.data_dir / CACHE_FILE, settings.provider_cache_ttl_s
        )
        # The status store, for the credit ledger (shared/credits.py says why it is written
        # here and not through the router).
        self.store = Store(settings.common.db_path)
        self.purge: Supervised | None = None

    async def start(self) -> None:
        await self.cache.open()
        await self.store.open()
        runtime = self.runtime
        # Before the control stream is read: every deletion in its history is applied.
        runtime.control.on_deleted(self.cache.job_deleted)
        self.purge = supervise("cache-purge", self.cache.run_purge)
        session = runtime.http_session()
        metrics = ProviderMetrics(runtime.metrics)
        providers = [
            build_provider(p, session, runtime.control, metrics) for p in self.settings.providers
        ]
        spending = Spending(
            self.store,
            self.settings.daily_credit_budget,
            kinds={p.name: p.kind for p in self.settings.providers},
            keys={p.name: p.key for p in self.settings.providers},
        )
        handler = EnrichHandler(
            Waterfall(providers, self.cache, metrics, spending),
            runtime.spec.policy,
            runtime.broker.topology.work_queue(KIND),
            self.settings.fault_crash_on,
            spending,
        )
        await runtime.start(handler)

    async def stop(self) -> None:
        await self.runtime.stop()
        if self.purge is not None:
            await self.purge.stop()
        await self.cache.close()
        await self.store.close()
