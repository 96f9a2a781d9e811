"""The one place that turns broker deliveries into handler calls, and the retry and
dead-letter policy of every task: handlers say what happened, only this module decides
what it means for the message (publish, delay, dead-letter, ack).

A consumer owns: decode → bind log context → handler → publish the handler's messages
with confirms → ack, and the error policy, so handlers stay pure business. A task
handler returns `Handled`: results to `publish`, and `retries`, each some of the task's
items with their partial state (`Retry`), which this module sends through a delay tier
or, past `max_attempts`, dead-letters with the outcome the handler gave for that case:

- `Retry(later=True)`, a `TransientError` with `later` (a 429, a cooldown, a spent rate
  window), or `StoreUnavailable`: the other side said "later", nothing is wrong with the
  work, so it waits through the delay tiers with its attempt count unchanged, however
  often (the job's timeout bounds it);
- a body that does not decode, or a `PermanentError`: dead-lettered at once (the
  give-up hook publishes what the job needs to still complete, e.g. failed leads);
- any other `Retry`, `TransientError` or unexpected exception: the message goes to a
  delayed retry tier (`compute_backoff`) with its attempt count + 1 and the error appended
  to its history header, until `max_attempts`, then it is dead-lettered with that history;
- the broker itself failing mid-way: the message is requeued (or, after a reconnect,
  redelivered by the broker) — never acked without its results confirmed;
- the store unavailable (`StoreUnavailable`: locked, disk full): infrastructure, not bad
  data, so no attempt is spent on it (as above); the router's `BatchConsumer` holds its
  batch and tries it again with backoff until the store takes it (a requeue would count
  against the quorum queue's delivery limit and dead-letter good events).

`TaskConsumer` handles deliveries concurrently (up to the prefetch). A delivery flagged
`redelivered` means its previous consumer died or lost its connection holding it; such
messages move to the queue's suspect queue, handled one at a time, where each further
redelivery counts as a crash. A suspect that crashes its consumer is split into
single-item messages (the `split` hook), so the one item that kills the consumer is
dead-lettered alone after `max_attempts` crashes and its neighbours carry on.

`BatchConsumer` handles deliveries in order, in batches of whatever has arrived, for the
router's single writer; its quorum queue's delivery limit bounds poison events.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar

import msgspec
import structlog

from shared import tracing
from shared.broker import (
    ATTEMPT_HEADER,
    BROKER_ERRORS,
    CRASHES_HEADER,
    ERROR_HEADER,
    HISTORY_HEADER,
    ConsumerBroker,
    DeadLetter,
    Delayed,
    Delivered,
    Outgoing,
    Subscription,
    ToQueue,
    settle,
)
from shared.control import ControlListener
from shared.errors import BrokerUnavailable, PermanentError, StoreUnavailable, TransientError
from shared.health import Metrics
from shared.jobs import PRIORITY_LEVELS
from shared.labels import queue_label
from shared.logging import get_logger
from shared.messages import Codec, JobStopped, LaneOpened, Message
from shared.slots import FairSlots
from shared.supervise import Backoff, Supervised, compute_backoff, supervise

M = TypeVar("M", bound=Message)
log = get_logger(__name__)
MAX_HISTORY = 20
RETURNED_REMEMBERED = 10_000
PREFETCH_AHEAD = 2
# Waiting out store trouble: how soon a held batch is tried again (the router), and the
# delay tier a task goes through (workers). A locked store also blocks each try for the
# store's busy timeout, so the tries are spaced by that at least.
STORE_BACKOFF = Backoff(base_s=0.5, max_s=15.0)
STORE_RETRY_DELAY_S = 5.0


@dataclass(frozen=True)
class Delivery:
    """What the handler may want to know about how the message arrived."""

    attempt: int
    redelivered: bool
    priority: str = "normal"


@dataclass(frozen=True)
class Retry(Generic[M]):
    """Some of a task's items, to try again later: `message` carries them with their
    partial state (answers so far). `reason` says why (it goes in the history header);
    `after_s`, when the other side said how long to wait (a `Retry-After`). With `later`,
    the other side only said "later" (a 429, a cooldown): no attempt is spent. `if_given_up`
    is what to publish should the consumer give the items up (their failed outcome)."""

    message: M
    reason: str
    after_s: float = 0.0
    later: bool = False
    if_given_up: Sequence[Outgoing] = ()


@dataclass(frozen=True)
class Handled(Generic[M]):
    """What a task handler did: results to publish, and items to try again."""

    publish: Sequence[Outgoing] = ()
    retries: Sequence[Retry[M]] = field(default_factory=tuple)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 600.0

    def backoff_s(self, attempt: int) -> float:
        """The delay before the `attempt`-th retry (1-based)."""
        return compute_backoff(attempt, self.backoff_base_s, self.backoff_max_s)

    def delay_s(self, attempt: int, after_s: float, *, later: bool) -> float:
        """How long a retry waits: what the other side asked for when it only said "later",
        else the backoff of the attempt to come, and never less than asked."""
        if later and after_s > 0:
            return after_s
        return max(after_s, self.backoff_s(attempt + 1))


GiveUp = Callable[[M, str], Sequence[Outgoing]]


class _Consumer(Generic[M]):
    def __init__(
        self,
        broker: ConsumerBroker,
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
        self.returned: OrderedDict[str, None] = OrderedDict()
        # Where this consumer's dead letters go (the base name of its kind of work).
        self.dead_letter_key = queue_name
        # Strong references to the queues: robust consumers must stay restorable.
        self._subscriptions: list[tuple[Subscription, str]] = []

    async def start(self) -> None:
        await self.subscribe(self.queue_name, self.prefetch, self._on_message)

    async def subscribe(
        self,
        queue_name: str,
        prefetch: int,
        callback: Callable[[Delivered], Awaitable[None]],
    ) -> None:
        queue = await self.broker.consume_channel(queue_name, prefetch)
        tag = await queue.consume(callback)
        self._subscriptions.append((queue, tag))
        log.info("consumer.started", queue=queue_name, prefetch=prefetch)

    async def stop_taking(self) -> None:
        for queue, tag in self._subscriptions:
            try:
                await queue.cancel(tag)
            except BROKER_ERRORS as e:
                log.warning("consumer.cancel_failed", queue=queue.name, error=str(e))
        self._subscriptions.clear()

    async def _on_message(self, message: Delivered) -> None:
        raise NotImplementedError

    async def settle(self, message: Delivered, *, requeue: bool | None = None) -> None:
        """Ack or requeue; remember what this process handed back (requeued, or could not
        ack after a reconnect), so its redelivery here is not mistaken for a crash."""
        if not await settle(message, requeue=requeue) or requeue:
            self.returned[message.message_id or ""] = None
            while len(self.returned) > RETURNED_REMEMBERED:
                self.returned.popitem(last=False)

    def handed_back_here(self, message: Delivered) -> bool:
        return self.returned.pop(message.message_id or "", False) is None

    def decode(self, message: Delivered) -> M | str:
        """The decoded message, or why it cannot be one."""
        try:
            decoded = self.codec.decode(message.body)
        except msgspec.DecodeError as e:
            return f"undecodable message: {e}"
        if not isinstance(decoded, self.message_type):
            return f"unexpected message type {type(decoded).__name__} on {self.queue_name}"
        return decoded

    async def publish_results(self, message: Delivered, outgoing: Sequence[Outgoing]) -> None:
        await self.broker.publish([with_history(item, message) for item in outgoing])

    async def fail(self, message: Delivered, decoded: M | None, error: BaseException) -> str:
        """Apply the error policy to one message; returns the outcome for logs and metrics."""
        if isinstance(error, BrokerUnavailable):
            await self.settle(message, requeue=True)
            return "requeue"
        reason = describe(error)
        if decoded is None or isinstance(error, PermanentError):
            return await self.dead_letter(message, decoded, reason)
        if isinstance(error, StoreUnavailable):
            # Waiting out the store is not a try; its own pace, not the error's backoff.
            retry = Retry(decoded, reason, after_s=STORE_RETRY_DELAY_S, later=True)
        elif isinstance(error, TransientError):
            retry = Retry(decoded, reason, after_s=error.retry_after_s or 0.0, later=error.later)
        else:
            retry = Retry(decoded, reason)
        delayed = self.retry_of(message, retry)
        if delayed is None:
            return await self.dead_letter(message, decoded, reason)
        return await self.settle_with(message, [delayed], "retry")

    def retry_of(self, message: Delivered, retry: Retry[M]) -> Delayed | None:
        """The retry policy: `retry` through a delay tier, or None once its attempts are
        spent (a `later` retry spends none)."""
        attempt = attempt_of(message)
        if not retry.later and attempt + 1 >= self.policy.max_attempts:
            return None
        return Delayed(
            retry.message,
            delay_s=self.policy.delay_s(attempt, retry.after_s, later=retry.later),
            attempt=attempt if retry.later else attempt + 1,
            priority=priority_name(message.priority),
            headers={ERROR_HEADER: retry.reason},
        )

    def outgoing_of(self, message: Delivered, handled: Handled[M]) -> list[Outgoing]:
        """Everything a handled task publishes: its results, each retry delayed, or, once its
        attempts are spent, its given-up outcome and a dead letter of its items."""
        out = list(handled.publish)
        for retry in handled.retries:
            delayed = self.retry_of(message, retry)
            if delayed is not None:
                out.append(delayed)
                continue
            out.extend(retry.if_given_up)
            out.append(
                DeadLetter(
                    retry.message,
                    of=self.dead_letter_key,
                    attempt=attempt_of(message),
                    priority=priority_name(message.priority),
                    headers={ERROR_HEADER: retry.reason},
                )
            )
        return out

    async def dead_letter(self, message: Delivered, decoded: M | None, reason: str) -> str:
        """Give the message's work an outcome (give-up hook), park it in the DLQ, ack it."""
        try:
            if decoded is not None:
                await self.publish_results(message, self.give_up(decoded, reason))
            await self.broker.publish_dead(
                self.dead_letter_key, message.body, dead_letter_headers(message, reason)
            )
        except BrokerUnavailable:
            await self.settle(message, requeue=True)
            return "requeue"
        await self.settle(message)
        return "dead_letter"

    async def settle_with(
        self, message: Delivered, outgoing: Sequence[Outgoing], outcome: str
    ) -> str:
        """Publish `outgoing`, then ack; requeue instead if the broker cannot take them."""
        try:
            await self.publish_results(message, outgoing)
        except BrokerUnavailable:
            await self.settle(message, requeue=True)
            return "requeue"
        await self.settle(message)
        return outcome

    def count(self, outcome: str, elapsed_s: float | None = None, n: int = 1) -> None:
        broker = self.broker
        queue = queue_label(broker.topology, self.queue_name, broker.settings.metrics_tenant_labels)
        self.metrics.consumed.labels(queue=queue, outcome=outcome).inc(n)
        if elapsed_s is not None:
            self.metrics.handle_seconds.labels(queue=queue).observe(elapsed_s)


class TaskConsumer(_Consumer[M]):
    """Concurrent handling of a kind of work, from every tenant's lane and the suspect queue.

    Each lane is consumed with its own prefetch (a little over the per-tenant limit, so
    the next task is at hand); `FairSlots` decide which delivered task runs: at most
    `concurrency` at once, at most `prefetch` of one tenant, high priority first. Tasks of
    a stopped (cancelled, timed out) job are dropped unprocessed, and in-flight ones are
    abandoned."""

    def __init__(
        self,
        broker: ConsumerBroker,
        kind: str,
        message_type: type[M],
        handler: Callable[[M, Delivery], Coroutine[Any, Any, Handled[M]]],
        *,
        control: ControlListener,
        concurrency: int,
        split: Callable[[M], list[M]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(broker, broker.topology.work_queue(kind), message_type, **kwargs)
        self.kind = kind
        self.handler = handler
        self.control = control
        self.split = split
        self.slots = FairSlots(concurrency, per_tenant=self.prefetch)
        self.suspect_queue = broker.topology.suspect_queue(kind)
        self._lanes: set[str] = set()
        self._started = False
        self._suspect_subscribed = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._by_job: dict[str, set[asyncio.Task[Any]]] = {}

    async def start(self) -> None:
        """Subscribe to the suspect queue and every known lane (again if a try failed)."""
        if not self._started:
            self.control.on_stop(self._abandon)
            self.control.on_lane(self._lane_opened)
            self._started = True
        if not self._suspect_subscribed:
            await self.subscribe(self.suspect_queue, 1, partial(self._track, suspect=True))
            self._suspect_subscribed = True
        for kind, tenant in sorted(self.control.lanes):
            if kind == self.kind:
                await self._subscribe_lane(tenant)

    async def _lane_opened(self, lane: LaneOpened) -> None:
        if lane.kind == self.kind:
            await self._subscribe_lane(lane.tenant)

    async def _subscribe_lane(self, tenant: str) -> None:
        # Every priority level's lane (one with classic queues), each with its prefetch:
        # a high task is delivered while the others' prefetch is full; the slots start it first.
        for queue in self.broker.topology.lane_queues(self.kind, tenant):
            if queue not in self._lanes:
                # A task or two more than may run, so the next one is here when a slot frees.
                track = partial(self._track, suspect=False)
                await self.subscribe(queue, self.prefetch + PREFETCH_AHEAD, track)
                self._lanes.add(queue)

    def queue_names(self) -> list[str]:
        """The queues consumed now: the suspect queue and every lane subscribed to."""
        return [self.suspect_queue, *sorted(self._lanes)]

    def _abandon(self, stopped: JobStopped) -> None:
        for task in self._by_job.pop(stopped.job_id, set()):
            task.cancel()

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

    async def _track(self, message: Delivered, *, suspect: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            if message.redelivered and not self.handed_back_here(message):
                await self._after_crash(message, suspect=suspect)
            else:
                await self._process(message)
        finally:
            self._inflight.discard(task)

    async def _after_crash(self, message: Delivered, *, suspect: bool) -> None:
        """A redelivery: its consumer died or lost the connection while holding it."""
        crashes = crashes_of(message) + (1 if suspect else 0)
        decoded = self.decode(message)
        item = None if isinstance(decoded, str) else decoded
        parts = self.split(item) if suspect and item is not None and self.split else []
        if crashes >= self.policy.max_attempts:
            reason = f"its consumer died or lost its connection {crashes} times handling it"
            outcome = await self.dead_letter(message, item, reason)
        elif len(parts) > 1:
            headers = {CRASHES_HEADER: crashes}
            priority = priority_name(message.priority)
            attempt = attempt_of(message)
            outgoing: list[Outgoing] = [
                ToQueue(p, self.suspect_queue, attempt=attempt, priority=priority, headers=headers)
                for p in parts
            ]
            outcome = await self.settle_with(message, outgoing, "split")
        else:
            try:
                await self.broker.republish(self.suspect_queue, message, {CRASHES_HEADER: crashes})
                await self.settle(message)
                outcome = "quarantined"
            except BrokerUnavailable:
                await self.settle(message, requeue=True)
                outcome = "requeue"
        log.warning("message.redelivered", queue=self.queue_name, crashes=crashes, outcome=outcome)
        self.count(outcome)

    async def _process(self, message: Delivered) -> None:
        started = time.perf_counter()
        decoded = self.decode(message)
        if isinstance(decoded, str):
            outcome = await self.dead_letter(message, None, decoded)
            log.error("message.rejected", queue=self.queue_name, reason=decoded, outcome=outcome)
            self.count(outcome)
            return
        delivery = Delivery(
            attempt=attempt_of(message),
            redelivered=bool(message.redelivered),
            priority=priority_name(message.priority),
        )
        with (
            structlog.contextvars.bound_contextvars(job_id=decoded.job_id, tenant=decoded.tenant),
            tracing.span(
                f"task {self.kind}",
                parent=message.headers,
                job_id=decoded.job_id,
                attempt=delivery.attempt,
                redelivered=delivery.redelivered,
            ),
        ):
            error: BaseException | None = None
            try:
                # The slots bound the handlers running; publishing and acking happen after
                # the slot is handed on, so the next prefetched task starts meanwhile.
                await self.slots.acquire(delivery.priority, decoded.tenant)
                try:
                    handled = await self._handle(decoded, delivery)
                finally:
                    self.slots.release(decoded.tenant)
            except JobWasStopped:
                outcome = await self.settle_with(message, (), "dropped")
            except Exception as e:  # the error policy decides; nothing is dropped silently
                error = e
                outcome = await self.fail(message, decoded, e)
            else:
                outgoing = self.outgoing_of(message, handled)
                outcome = await self.settle_with(message, outgoing, "ack")
            elapsed = time.perf_counter() - started
            self.count(outcome, elapsed)
            log_outcome(self.queue_name, outcome, elapsed, delivery, error)

    async def _handle(self, decoded: M, delivery: Delivery) -> Handled[M]:
        """Run the handler as a task of its own, so a job stop can abandon it mid-way."""
        job_id = decoded.job_id
        if self.control.is_stopped(job_id):
            raise JobWasStopped(job_id)
        work = asyncio.create_task(self.handler(decoded, delivery))
        self._by_job.setdefault(job_id, set()).add(work)
        try:
            return await work
        except asyncio.CancelledError:
            if self.control.is_stopped(job_id) and not _cancelling(asyncio.current_task()):
                raise JobWasStopped(job_id) from None
            raise
        finally:
            job_tasks = self._by_job.get(job_id)
            if job_tasks is not None:
                job_tasks.discard(work)
                if not job_tasks:
                    del self._by_job[job_id]


class JobWasStopped(Exception):
    """The job was cancelled or timed out: its task is dropped, not retried."""


def _cancelling(task: asyncio.Task[Any] | None) -> bool:
    """Whether `task` itself is being cancelled (shutdown), not just a child of it."""
    return task is not None and task.cancelling() > 0


class BatchConsumer(_Consumer[M]):
    """In-order handling of everything that has arrived, as one batch, by one worker.

    A batch whose handler finds the store unavailable is held (not acked, not requeued)
    and tried again with backoff until the store takes it; the next deliveries wait
    behind it, in order, and the broker stops sending at the prefetch."""

    def __init__(
        self,
        broker: ConsumerBroker,
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
        self._arrived: asyncio.Queue[Delivered] = asyncio.Queue()
        self._worker: Supervised | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.held_since: float | None = None  # a batch waits for the store since then

    async def start(self) -> None:
        """Start the worker and subscribe; safe to call again after a failed try."""
        if self._worker is None:
            self._worker = supervise(f"batch-{self.queue_name}", self._work)
        if not self._subscriptions:
            await super().start()

    async def readiness(self) -> str | None:
        """Ready once consuming with a live worker."""
        if self._worker is None or not self._subscriptions:
            return f"not consuming {self.queue_name} yet"
        return await self._worker.readiness()

    async def stop(self, grace_s: float) -> None:
        await self.stop_taking()
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            log.warning("consumer.grace_expired", queue=self.queue_name)
        if self._worker is not None:
            await self._worker.stop()

    async def _on_message(self, message: Delivered) -> None:
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

    async def _handle_batch(self, batch: list[Delivered]) -> None:
        started = time.perf_counter()
        good: list[tuple[Delivered, M]] = []
        for message in batch:
            decoded = self.decode(message)
            if isinstance(decoded, str):
                outcome = await self.dead_letter(message, None, decoded)
                log.error(
                    "message.rejected", queue=self.queue_name, reason=decoded, outcome=outcome
                )
                self.count(outcome)
            else:
                good.append((message, decoded))
        if not good:
            return
        try:
            # One store transaction for the batch: a span in the trace of its first
            # message's job, linked to the others'.
            with tracing.span(
                "record batch",
                parent=good[0][0].headers,
                queue=self.queue_name,
                links=[message.headers for message, _ in good[1:]],
                messages=len(good),
            ):
                outgoing = await self._handle_waiting_out_store([m for _, m in good])
                await self.broker.publish(outgoing)
        except BrokerUnavailable:
            # The broker, not a message, failed: every one comes back, no need to split.
            for message, _ in good:
                await self.settle(message, requeue=True)
            self.count("requeue", n=len(good))
            return
        except Exception as e:
            if len(good) == 1:
                outcome = await self.fail(good[0][0], good[0][1], e)
                self.count(outcome)
                log_outcome(self.queue_name, outcome, time.perf_counter() - started, None, e)
                return
            # Find the one that fails: handle each alone, so innocent neighbours pass.
            log.warning("consumer.batch_failed_splitting", queue=self.queue_name, error=describe(e))
            for message, _ in good:
                await self._handle_batch([message])
            return
        for message, _ in good:
            await self.settle(message)
        self.count("ack", time.perf_counter() - started, n=len(good))

    async def _handle_waiting_out_store(self, items: list[M]) -> Sequence[Outgoing]:
        """The handler's result; while the store is unavailable the batch is held and
        tried again (handlers are idempotent: a redelivered event changes nothing)."""
        tries = 0
        while True:
            try:
                outgoing = await self.handler(items)
            except StoreUnavailable as e:
                tries += 1
                if self.held_since is None:
                    self.held_since = time.monotonic()
                delay = STORE_BACKOFF.delay_s(tries)
                log.warning(
                    "consumer.store_unavailable_holding",
                    queue=self.queue_name,
                    messages=len(items),
                    held_s=round(time.monotonic() - self.held_since, 1),
                    retry_in_s=round(delay, 2),
                    error=str(e),
                )
                await asyncio.sleep(delay)
                continue
            if self.held_since is not None:
                log.info(
                    "consumer.store_back",
                    queue=self.queue_name,
                    held_s=round(time.monotonic() - self.held_since, 1),
                )
                self.held_since = None
            return outgoing


def attempt_of(message: Delivered) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


def crashes_of(message: Delivered) -> int:
    value = (message.headers or {}).get(CRASHES_HEADER, 0)
    return value if isinstance(value, int) else 0


def history_of(message: Delivered) -> list[str]:
    value = (message.headers or {}).get(HISTORY_HEADER, [])
    return [str(item) for item in value] if isinstance(value, list) else []


def with_history(item: Outgoing, message: Delivered) -> Outgoing:
    """A retry or dead letter carries the attempts so far, each with its error."""
    if not isinstance(item, Delayed | DeadLetter):
        return item
    note = str(item.headers.get(ERROR_HEADER, "retry"))
    entry = f"attempt {attempt_of(message) + 1}: {note}"
    history = [*history_of(message), entry][-MAX_HISTORY:]
    return replace(item, headers={**item.headers, HISTORY_HEADER: history})


def priority_name(priority: int | None) -> str:
    names = {level: name for name, level in PRIORITY_LEVELS.items()}
    return names.get(priority or PRIORITY_LEVELS["normal"], "normal")


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, PermanentError | BrokerUnavailable):
        return text
    return f"{type(error).__name__}: {text}"


def dead_letter_headers(message: Delivered, reason: str) -> dict[str, Any]:
    entry = f"attempt {attempt_of(message) + 1}: {reason}"
    return {
        **(message.headers or {}),
        ERROR_HEADER: reason[:1000],
        HISTORY_HEADER: [*history_of(message), entry][-MAX_HISTORY:],
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
