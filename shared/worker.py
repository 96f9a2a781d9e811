"""What every task worker (enricher, scraper) runs: the ops server, the broker, the control
stream, and one `TaskConsumer`, started in the right order and stopped gracefully.

A worker reads the control history before it takes any task, so a job cancelled, or an
account put in cooldown, before it started is already known when its first task arrives.
Its background work (that start, lag sampling) runs supervised (`shared.supervise`):
retried with backoff on any error, and `/readyz` fails until it consumes and whenever a
task is failing or dead.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from shared.broker import Broker
from shared.config import CommonSettings, WorkerSettings
from shared.consumer import Delivery, GiveUp, Handled, RetryPolicy, TaskConsumer
from shared.control import ControlListener
from shared.health import Metrics, OpsServer
from shared.lag import sample_lag
from shared.logging import get_logger
from shared.messages import Codec, Message
from shared.supervise import Backoff, Supervised, stop_all, supervise

M = TypeVar("M", bound=Message)
log = get_logger(__name__)
START_BACKOFF = Backoff(base_s=1.0, max_s=10.0)
Handler = Callable[[M, Delivery], Coroutine[Any, Any, Handled[M]]]


@dataclass(frozen=True)
class WorkerSpec(Generic[M]):
    kind: str
    message_type: type[M]
    settings: WorkerSettings
    give_up: GiveUp[M]
    split: Callable[[M], list[M]] | None = None

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.settings.max_attempts,
            backoff_base_s=self.settings.retry_base_s,
            backoff_max_s=self.settings.retry_max_s,
        )


class WorkerRuntime(Generic[M]):
    def __init__(self, common: CommonSettings, spec: WorkerSpec[M]) -> None:
        self.common = common
        self.spec = spec
        self.metrics = Metrics()
        # One codec for the process: msgspec's encoder and decoder are built once.
        self.codec = Codec()
        self.broker = Broker(common, self.codec, self.metrics)
        self.control = ControlListener(self.broker, self.codec)
        self.session: aiohttp.ClientSession | None = None
        self._consumer: TaskConsumer[M] | None = None
        self._tasks: list[Supervised] = []
        self.ops = OpsServer(
            common.http_host,
            common.http_port,
            [self.broker.readiness, self._ready],
            self.metrics,
            self.broker.ready_details,
        )

    async def start(self, handler: Handler[M]) -> None:
        """Serve ops at once; consume once connected and caught up with the control stream."""
        await self.ops.start()
        spec = self.spec
        self._consumer = TaskConsumer(
            self.broker,
            spec.kind,
            spec.message_type,
            handler,
            control=self.control,
            concurrency=spec.settings.concurrency,
            codec=self.codec,
            metrics=self.metrics,
            prefetch=spec.settings.tenant_concurrency,
            policy=spec.policy,
            give_up=spec.give_up,
            split=spec.split,
        )
        self.broker.start()
        consumer = self._consumer
        self._tasks = [
            supervise(
                "consume", lambda: self._consume_when_connected(consumer), START_BACKOFF, once=True
            ),
            supervise("lag", lambda: sample_lag(self.broker, self.metrics, consumer.queue_names)),
        ]

    def http_session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            )
        return self.session

    async def _consume_when_connected(self, consumer: TaskConsumer[M]) -> None:
        # Each step may fail on a broker hiccup; supervised, the worker keeps trying (and
        # stays not ready meanwhile) rather than running without consuming. Each step
        # skips what an earlier try already did.
        await self.broker.wait_ready()
        await self.control.start()
        await self.control.catch_up()
        await consumer.start()

    async def _ready(self) -> str | None:
        if not self._tasks:
            return "not started"
        for task in self._tasks:
            if task.once and not task.done and task.failing is None and task.died is None:
                return "not consuming yet (reading the control stream)"
            if (reason := await task.readiness()) is not None:
                return reason
        return None

    async def stop(self) -> None:
        await stop_all(self._tasks)
        if self._consumer is not None:
            await self._consumer.stop(self.common.shutdown_grace_s)
        await self.broker.close()
        if self.session is not None:
            await self.session.close()
        await self.ops.stop()
