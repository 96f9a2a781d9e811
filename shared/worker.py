"""What every task worker (enricher, scraper) runs: the ops server, the broker, the control
stream, and one `TaskConsumer`, started in the right order and stopped gracefully.

A worker reads the control history before it takes any task, so a job cancelled, or an
account put in cooldown, before it started is already known when its first task arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from shared.broker import BROKER_ERRORS, Broker, Outgoing
from shared.config import CommonSettings, WorkerSettings
from shared.consumer import Delivery, GiveUp, RetryPolicy, TaskConsumer
from shared.control import ControlListener
from shared.errors import BrokerUnavailable
from shared.health import Metrics, OpsServer
from shared.lag import sample_lag
from shared.logging import get_logger
from shared.messages import Codec, Message

M = TypeVar("M", bound=Message)
log = get_logger(__name__)
START_RETRY_S = 2.0
RETRYABLE_START: tuple[type[BaseException], ...] = (BrokerUnavailable, TimeoutError, *BROKER_ERRORS)
Handler = Callable[[M, Delivery], Coroutine[Any, Any, Sequence[Outgoing]]]


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
        self.broker = Broker(common, Codec(), self.metrics)
        self.control = ControlListener(self.broker, Codec())
        self.session: aiohttp.ClientSession | None = None
        self._consuming = asyncio.Event()
        self._consumer: TaskConsumer[M] | None = None
        self._starting: asyncio.Task[None] | None = None
        self.ops = OpsServer(
            common.http_host, common.http_port, [self.broker.readiness, self._ready], self.metrics
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
            codec=Codec(),
            metrics=self.metrics,
            prefetch=spec.settings.tenant_concurrency,
            policy=spec.policy,
            give_up=spec.give_up,
            split=spec.split,
        )
        self.broker.start()
        self._starting = asyncio.create_task(self._consume_when_connected(self._consumer))

    def http_session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            )
        return self.session

    async def _consume_when_connected(self, consumer: TaskConsumer[M]) -> None:
        # Each step may fail on a broker hiccup; the worker keeps trying (and stays not
        # ready meanwhile) rather than running without consuming.
        while True:
            await self.broker.wait_ready()
            try:
                await self.control.start()
                await self.control.catch_up()
                await consumer.start()
                break
            except RETRYABLE_START as e:
                log.warning("worker.start_failed_retrying", error=f"{type(e).__name__}: {e}")
                await asyncio.sleep(START_RETRY_S)
        self._consuming.set()
        await sample_lag(self.broker, self.metrics, consumer.queue_names)

    async def _ready(self) -> str | None:
        return (
            None if self._consuming.is_set() else "not consuming yet (reading the control stream)"
        )

    async def stop(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop(self.common.shutdown_grace_s)
        await self.broker.close()
        if self.session is not None:
            await self.session.close()
        await self.ops.stop()
