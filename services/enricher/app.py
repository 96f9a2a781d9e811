"""The enricher service: consumes enrich tasks and publishes lead outcomes.

It opens the status store for what every enricher shares: the provider keys' allowances
and concurrency (shared/limits.py) and the asynchronous batches submitted
(services/enricher/batches.py).
"""

from __future__ import annotations

from collections.abc import Callable

from services.enricher.batches import StoreBatches
from services.enricher.cache import ProviderCache, cache_target
from services.enricher.config import EnricherSettings, ProviderSettings
from services.enricher.groupcommit import GroupCommitStore
from services.enricher.handlers import EnrichHandler, give_up, split_task
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers import build_provider
from services.enricher.providers.base import Provider, Verifier
from services.enricher.spending import Spending
from services.enricher.waterfall import Waterfall
from shared.limits import StoreLimits
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
        self.cache = ProviderCache(cache_target(settings.common), settings.provider_cache_ttl_s)
        # Its writes are allowances and batch ids: losing the last ones on power loss costs
        # a request's turn or a batch resubmitted, never a lead.
        self.store = Store(settings.common.store_url, durable=False)
        # The credit ledger, durable (shared/credits.py says why it is written here and not
        # through the router); the store above takes the allowances' many small writes.
        # Concurrent tasks' reservations and settlements share a commit (and its fsync).
        self.ledger = GroupCommitStore(settings.common.store_url)
        self.purge: Supervised | None = None

    async def start(self) -> None:
        await self.cache.open()
        await self.store.open()
        await self.ledger.open()
        limits = StoreLimits(self.store)
        runtime = self.runtime
        # Before the control stream is read: every deletion in its history is applied.
        runtime.control.on_deleted(self.cache.job_deleted)
        self.purge = supervise("cache-purge", self.cache.run_purge)
        session = runtime.http_session()
        metrics = ProviderMetrics(runtime.metrics)
        batches = StoreBatches(self.store)

        def build(settings: ProviderSettings) -> Provider:
            return build_provider(
                settings, session, runtime.control, metrics, limits=limits, batches=batches
            )

        providers = [build(p) for p in self.settings.providers]
        # The verifier's calls are paid calls too (its own settings when not a provider).
        paid = [*self.settings.providers, *filter(None, [self.settings.verifier])]
        spending = Spending(
            self.ledger,
            self.settings.daily_credit_budget,
            kinds={p.name: p.kind for p in paid},
            keys={p.name: p.key for p in paid},
        )
        handler = EnrichHandler(
            Waterfall(providers, self.cache, metrics, self.verifier(providers, build), spending),
            self.settings.fault_crash_on,
            spending,
        )
        await runtime.start(handler)

    def verifier(
        self, providers: list[Provider], build: Callable[[ProviderSettings], Provider]
    ) -> Verifier | None:
        """`LEADFLOW_VERIFIER`'s adapter: the waterfall's own when it is one of them (one
        key pool, one concurrency), else one of its own."""
        wanted = self.settings.verifier
        if wanted is None:
            return None
        found = next((p for p in providers if p.name == wanted.name), None) or build(wanted)
        assert isinstance(found, Verifier)  # the settings allow verifier kinds only
        return found

    async def stop(self) -> None:
        await self.runtime.stop()
        if self.purge is not None:
            await self.purge.stop()
        await self.cache.close()
        await self.store.close()
        await self.ledger.close()
