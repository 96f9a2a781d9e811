"""The one place that turns broker deliveries into handler calls.

A consumer owns: decode → bind log context → handler → publish the handler's messages
with confirms → ack, and the error policy, so handlers stay pure business:

- a body that does not decode, or a `PermanentError`: dead-lettered at once (the
  give-up hook publishes what the job needs to still complete, e.g. failed leads);
- a `TransientError` or an unexpected exception: the message goes to a delayed retry
  tier with its attempt count + 1, until `max_attempts`, then it is dead-lettered;
- the broker itself failing mid-way: the message is requeued (or, after a reconnect,
  redelivered by the broker) — never acked without its results confirmed.

`TaskConsumer` handles deliveries concurrently (up to the prefetch). `BatchConsumer`
handles them in order, in batches of whatever has arrived, for the router's single writer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustQueue

from shared.broker import ATTEMPT_HEADER, BROKER_ERRORS, Broker, Outgoing
from shared.errors import BrokerUnavailable, PermanentError
from shared.health import Metrics
from shared.logging import get_logger
from shared.messages import Codec, Message

M = TypeVar("M", bound=Message)
log = get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What the handler may want to know about how the message arrived."""

    attempt: int
    redelivered: bool
    priority: str = "normal"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 600.0

    def backoff_s(self, attempt: int) -> float:
        """Exponential backoff with jitter for the `attempt`-th retry (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


GiveUp = Callable[[M, str], Sequence[Outgoing]]


class _Consumer(Generic[M]):
    def __init__(
        self,
        broker: Broker,
        queue_name: str,
        message_type: type[M],
        *,
        codec: Codec,
        metrics: Metrics,
        prefetch: int,
        policy: RetryPolicy,
        give_up: GiveUp[M],
    ) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.message_type = message_type
        self.codec = codec
        self.metrics = metrics
        self.prefetch = prefetch
        self.policy = policy
        self.give_up = give_up
        self._queue: AbstractRobustQueue | None = None
        self._consumer_tag: str | None = None

    async def start(self) -> None:
        self._queue = await self.broker.consume_channel(self.queue_name, self.prefetch)
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info("consumer.started", queue=self.queue_name, prefetch=self.prefetch)

    async def stop_taking(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except BROKER_ERRORS as e:
                log.warning("consumer.cancel_failed", queue=self.queue_name, error=str(e))
            self._consumer_tag = None

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        raise NotImplementedError

    def decode(self, message: AbstractIncomingMessage) -> M | str:
        """The decoded message, or why it cannot be one."""
        try:
            decoded = self.codec.decode(message.body)
        except msgspec.DecodeError as e:
            return f"undecodable message: {e}"
        if not isinstance(decoded, self.message_type):
            return f"unexpected message type {type(decoded).__name__} on {self.queue_name}"
        return decoded

    async def fail(
        self, message: AbstractIncomingMessage, decoded: M | None, error: BaseException
    ) -> str:
        """Apply the error policy to one message; returns the outcome for logs and metrics."""
        attempt = attempt_of(message)
        reason = describe(error)
        try:
            if isinstance(error, BrokerUnavailable):
                await settle(message, requeue=True)
                return "requeue"
            retryable = not isinstance(error, PermanentError)
            if decoded is not None and retryable and attempt + 1 < self.policy.max_attempts:
                await self.broker.publish([self.retry_of(decoded, message, attempt)])
                await settle(message)
                return "retry"
            if decoded is not None:
                await self.broker.publish(self.give_up(decoded, reason))
            await self.broker.publish_dead(
                self.queue_name, message.body, dead_letter_headers(message, reason, attempt)
            )
            await settle(message)
            return "dead_letter"
        except BrokerUnavailable:
            await settle(message, requeue=True)
            return "requeue"

    def retry_of(self, decoded: M, message: AbstractIncomingMessage, attempt: int) -> Outgoing:
        return Outgoing(
            decoded,
            priority=priority_name(message.priority),
            attempt=attempt + 1,
            retry_of=self.queue_name,
            delay_s=self.policy.backoff_s(attempt + 1),
        )


class TaskConsumer(_Consumer[M]):
    """Concurrent handling, one task per delivery, bounded by the prefetch."""

    def __init__(
        self,
        broker: Broker,
        queue_name: str,
        message_type: type[M],
        handler: Callable[[M, Delivery], Awaitable[Sequence[Outgoing]]],
        **kwargs: Any,
    ) -> None:
        super().__init__(broker, queue_name, message_type, **kwargs)
        self.handler = handler
        self._inflight: set[asyncio.Task[Any]] = set()

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages, let in-flight ones finish for `grace_s`, cancel the rest."""
        await self.stop_taking()
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            log.info("consumer.draining", queue=self.queue_name, in_flight=len(pending))
            _, still = await asyncio.wait(pending, timeout=grace_s)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            await self._process(message)
        finally:
            self._inflight.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        decoded = self.decode(message)
        if isinstance(decoded, str):
            outcome = await self.fail(message, None, PermanentError(decoded))
            log.error("message.rejected", queue=self.queue_name, reason=decoded, outcome=outcome)
            self.metrics.consumed.labels(queue=self.queue_name, outcome=outcome).inc()
            return
        delivery = Delivery(
            attempt=attempt_of(message),
            redelivered=bool(message.redelivered),
            priority=priority_name(message.priority),
        )
        with structlog.contextvars.bound_contextvars(job_id=decoded.job_id, tenant=decoded.tenant):
            error: BaseException | None = None
            try:
                await self.broker.publish(await self.handler(decoded, delivery))
                await settle(message)
                outcome = "ack"
            except Exception as e:  # the error policy decides; nothing is dropped silently
                error = e
                outcome = await self.fail(message, decoded, e)
            elapsed = time.perf_counter() - started
            self.metrics.consumed.labels(queue=self.queue_name, outcome=outcome).inc()
            self.metrics.handle_seconds.labels(queue=self.queue_name).observe(elapsed)
            log_outcome(self.queue_name, outcome, elapsed, delivery, error)


class BatchConsumer(_Consumer[M]):
    """In-order handling of everything that has arrived, as one batch, by one worker."""

    def __init__(
        self,
        broker: Broker,
        queue_name: str,
        message_type: type[M],
        handler: Callable[[list[M]], Awaitable[Sequence[Outgoing]]],
        *,
        max_batch: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(broker, queue_name, message_type, **kwargs)
        self.handler = handler
        self.max_batch = max_batch
        self._arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name=f"batch-{self.queue_name}")
        await super().start()

    async def stop(self, grace_s: float) -> None:
        await self.stop_taking()
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            log.warning("consumer.grace_expired", queue=self.queue_name)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._idle.clear()
        self._arrived.put_nowait(message)

    async def _work(self) -> None:
        while True:
            batch = [await self._arrived.get()]
            while len(batch) < self.max_batch and not self._arrived.empty():
                batch.append(self._arrived.get_nowait())
            try:
                await self._handle_batch(batch)
            except Exception:  # the worker must survive anything one batch does
                log.exception("consumer.batch_crashed", queue=self.queue_name)
            finally:
                if self._arrived.empty():
                    self._idle.set()

    async def _handle_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        started = time.perf_counter()
        good: list[tuple[AbstractIncomingMessage, M]] = []
        for message in batch:
            decoded = self.decode(message)
            if isinstance(decoded, str):
                outcome = await self.fail(message, None, PermanentError(decoded))
                log.error(
                    "message.rejected", queue=self.queue_name, reason=decoded, outcome=outcome
                )
                self.metrics.consumed.labels(queue=self.queue_name, outcome=outcome).inc()
            else:
                good.append((message, decoded))
        if not good:
            return
        try:
            await self.broker.publish(await self.handler([m for _, m in good]))
        except Exception as e:
            if len(good) == 1:
                outcome = await self.fail(good[0][0], good[0][1], e)
                self.metrics.consumed.labels(queue=self.queue_name, outcome=outcome).inc()
                log_outcome(self.queue_name, outcome, 0.0, None, e)
                return
            # Find the one that fails: handle each alone, so innocent neighbours pass.
            log.warning("consumer.batch_failed_splitting", queue=self.queue_name, error=describe(e))
            for message, _ in good:
                await self._handle_batch([message])
            return
        for message, _ in good:
            await settle(message)
        self.metrics.consumed.labels(queue=self.queue_name, outcome="ack").inc(len(good))
        self.metrics.handle_seconds.labels(queue=self.queue_name).observe(
            time.perf_counter() - started
        )


async def settle(message: AbstractIncomingMessage, *, requeue: bool | None = None) -> None:
    """Ack (or nack with requeue). After a reconnect the delivery tag is stale: the broker
    has already put the message back and will redeliver it, so that is logged, not raised."""
    try:
        if requeue is None:
            await message.ack()
        else:
            await message.nack(requeue=requeue)
    except BROKER_ERRORS as e:
        log.warning("message.settle_failed_will_redeliver", error=f"{type(e).__name__}: {e}")


def attempt_of(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


def priority_name(priority: int | None) -> str:
    return {3: "high", 1: "low"}.get(priority or 2, "normal")


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return (
        text
        if isinstance(error, PermanentError | BrokerUnavailable)
        else f"{type(error).__name__}: {text}"
    )


def dead_letter_headers(
    message: AbstractIncomingMessage, reason: str, attempt: int
) -> dict[str, Any]:
    return {
        **(message.headers or {}),
        "x-leadflow-error": reason[:1000],
        "x-leadflow-attempts": attempt + 1,
        "x-leadflow-dead-at": datetime.now(UTC).isoformat(),
        "x-leadflow-original-message-id": message.message_id or "",
    }


def log_outcome(
    queue: str,
    outcome: str,
    elapsed_s: float,
    delivery: Delivery | None,
    error: BaseException | None,
) -> None:
    fields: dict[str, Any] = {
        "queue": queue,
        "outcome": outcome,
        "duration_ms": round(elapsed_s * 1000, 1),
    }
    if delivery is not None:
        fields["attempt"] = delivery.attempt
    if error is None:
        log.info("message.handled", **fields)
    elif outcome in ("retry", "requeue"):
        log.warning("message.handled", error=describe(error), **fields)
    else:
        log.error("message.handled", error=describe(error), **fields, exc_info=error)
