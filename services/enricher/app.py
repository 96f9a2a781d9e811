"""The enricher service: consumes enrich tasks and publishes lead outcomes."""

from __future__ import annotations

import asyncio

import aiohttp

from services.enricher.cache import ProviderCache
from services.enricher.config import EnricherSettings
from services.enricher.handlers import EnrichHandler, give_up, split_task
from services.enricher.providers.http import PersonMatchProvider
from services.enricher.waterfall import Waterfall
from shared.broker import Broker
from shared.consumer import RetryPolicy, TaskConsumer
from shared.control import ControlListener
from shared.health import Metrics, OpsServer
from shared.messages import Codec, EnrichTask

KIND = "enrich"


class EnricherService:
    def __init__(self, settings: EnricherSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.broker = Broker(settings.common, Codec(), self.metrics)
        self.control = ControlListener(self.broker, Codec())
        self._consuming = asyncio.Event()
        self.ops = OpsServer(
            settings.common.http_host,
            settings.common.http_port,
            [self.broker.readiness, self._consuming_ready],
            self.metrics,
        )
        self.policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_base_s=settings.retry_base_s,
            backoff_max_s=settings.retry_max_s,
        )
        self.cache = ProviderCache(
            settings.common.data_dir / "provider-cache.db", settings.provider_cache_ttl_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._consumer: TaskConsumer[EnrichTask] | None = None
        self._starting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ops.start()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        )
        await self.cache.open()
        providers = [PersonMatchProvider(p, self._session) for p in self.settings.providers]
        waterfall = Waterfall(providers, self.cache)
        dead_letter_key = self.broker.topology.work_queue(KIND)
        handler = EnrichHandler(
            waterfall, self.policy, dead_letter_key, self.settings.fault_crash_on
        )
        self._consumer = TaskConsumer(
            self.broker,
            KIND,
            EnrichTask,
            handler,
            control=self.control,
            concurrency=self.settings.concurrency,
            codec=Codec(),
            metrics=self.metrics,
            prefetch=self.settings.tenant_concurrency,
            policy=self.policy,
            give_up=give_up,
            split=split_task,
        )
        self.broker.start()
        self._starting = asyncio.create_task(self._consume_when_connected(self._consumer))

    async def _consume_when_connected(self, consumer: TaskConsumer[EnrichTask]) -> None:
        # Read the control history first: a job cancelled before this worker started must
        # not have its tasks processed here.
        await self.broker.wait_ready()
        await self.control.start()
        await self.control.catch_up()
        await consumer.start()
        self._consuming.set()

    async def _consuming_ready(self) -> str | None:
        return (
            None if self._consuming.is_set() else "not consuming yet (reading the control stream)"
        )

    async def stop(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop(self.settings.common.shutdown_grace_s)
        await self.broker.close()
        if self._session is not None:
            await self._session.close()
        await self.cache.close()
        await self.ops.stop()
