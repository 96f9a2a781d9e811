"""The router service: the single writer of job status and the fan-out to destinations.

It consumes the event stream as the single active consumer of a quorum queue; a second
router process waits as a hot standby and takes over when the first one goes away.

Every background loop (consumer start, dead letters, webhook delivery, upkeep, lag
sampling) runs supervised (`shared.supervise`): an error is logged and the loop starts
again after a backoff, and `/readyz` fails while one is failing or dead, while the store
cannot be written, and until the router consumes.
"""

from __future__ import annotations

import aiohttp

from services.gateway.submit import JobSubmitter
from services.router.alerts import Alerter
from services.router.config import RouterSettings
from services.router.daily import DailyExporter
from services.router.deadletters import DeadLetterKeeper
from services.router.dependencies import DependencyKeeper
from services.router.destinations.csv import CsvExporter
from services.router.destinations.webhook import WebhookDispatcher
from services.router.gauges import JobGauges
from services.router.handlers import EventHandler
from services.router.retention import RetentionKeeper
from services.router.schedules import RunDefaults, Scheduler
from services.router.stalls import StallDetector
from services.router.timeouts import DeadlineKeeper
from services.router.upkeep import run_upkeep
from shared.broker import Broker
from shared.consumer import BatchConsumer, RetryPolicy
from shared.health import Metrics, OpsServer
from shared.lag import sample_lag
from shared.messages import Codec, Message
from shared.netguard import GuardedResolver, NetGuard
from shared.store import Store
from shared.supervise import Supervised, stop_all, supervise


class RouterService:
    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        common = settings.common
        self.metrics = Metrics()
        self.store = Store(common.store_url)
        self.codec = Codec()  # built once per process
        self.broker = Broker(common, self.codec, self.metrics)
        self.ops = OpsServer(
            common.http_host,
            common.http_port,
            [self.broker.readiness, self._store_ready, self._consuming, self._tasks_ready],
            self.metrics,
            self.broker.ready_details,
        )
        self._session: aiohttp.ClientSession | None = None
        self._consumer: BatchConsumer[Message] | None = None
        self._tasks: list[Supervised] = []

    async def _store_ready(self) -> str | None:
        await self.store.check_writable("router")
        return None

    async def _consuming(self) -> str | None:
        if self._consumer is None:
            return "not started"
        return await self._consumer.readiness()

    async def _tasks_ready(self) -> str | None:
        for task in self._tasks:
            if (reason := await task.readiness()) is not None:
                return reason
        return None

    async def start(self) -> None:
        await self.store.open()
        await self.ops.start()
        guard = NetGuard(self.settings.webhook.allow_nets)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(guard), limit=100)
        )
        webhooks = WebhookDispatcher(
            self.store, self._session, guard, self.settings.webhook, self.metrics
        )
        csv = CsvExporter(self.store, self.settings.common.exports_dir)
        self._consumer = BatchConsumer(
            self.broker,
            self.broker.topology.events_queue,
            Message,
            EventHandler(self.store, csv, webhooks, self.metrics, self.settings.task_batch_size),
            max_batch=self.settings.max_batch,
            codec=self.codec,
            metrics=self.metrics,
            prefetch=self.settings.max_batch * 2,
            policy=RetryPolicy(),
            give_up=lambda _event, _reason: (),
        )
        settings = self.settings
        submitter = JobSubmitter(
            self.store, self.broker, settings.publish_timeout_s, settings.daily_quota_leads
        )
        defaults = RunDefaults(settings.default_timeout_s, settings.webhook.secret_box)
        duties = [
            ("schedules", Scheduler(self.store, submitter, defaults).check),
            ("deadlines", DeadlineKeeper(self.store, self.broker).check),
            (
                "dependencies",
                DependencyKeeper(self.store, self.broker, settings.task_batch_size).check,
            ),
            (
                "stalls",
                StallDetector(self.store, self.broker, self.metrics, settings.stall_after_s).check,
            ),
            (
                "alerts",
                Alerter(self.store, self._session, settings.alert_webhook_url, guard).check,
            ),
            ("job gauges", JobGauges(self.store, self.metrics).check),
            ("csv catch-up", csv.catch_up),
            (
                "retention",
                RetentionKeeper(
                    self.store,
                    self.broker,
                    settings.common.exports_dir,
                    settings.retention_days,
                    settings.delete_exports,
                    settings.dead_letter_retention_days,
                ).check,
            ),
        ]
        if settings.daily_exports:
            exports = settings.common.data_dir / "exports"
            duties.append(("daily exports", DailyExporter(self.store, exports).check))
        self.broker.start()
        consumer = self._consumer
        dead_letters = DeadLetterKeeper(self.broker, self.store, self.codec)

        async def consume_when_connected() -> None:
            # The same retry loop as the workers': each step may fail on a broker hiccup,
            # and is tried again (not ready meanwhile) rather than leaving a router that
            # does not consume. Both starts skip what an earlier try already did.
            await self.broker.wait_ready()
            await consumer.start()
            await dead_letters.start()

        self._tasks = [
            supervise("consume", consume_when_connected, once=True),
            supervise("webhooks", webhooks.run),
            supervise("upkeep", lambda: run_upkeep(self.store, settings.upkeep_interval_s, duties)),
            supervise(
                "lag",
                lambda: sample_lag(
                    self.broker, self.metrics, lambda: [self.broker.topology.events_queue]
                ),
            ),
        ]

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop(self.settings.common.shutdown_grace_s)
        await stop_all(self._tasks)
        await self.broker.close()
        if self._session is not None:
            await self._session.close()
        await self.ops.stop()
        await self.store.close()
