"""An in-memory broker behind our own consumer interface (`shared.broker.ConsumerBroker`),
for unit tests of handlers and consumers without RabbitMQ: publishing with confirms (or
a broker that refuses them), deliveries with the redelivered flag, acks and requeues.

It fakes our interface, not RabbitMQ: routing is the production `route()`, so a message
published here goes where the real broker would put it, and `deliver_published` hands it
back to the consumer the way the broker would after its delay tier.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.broker import Delivered, Outgoing, Route, route
from shared.config import CommonSettings, EnvReader, load_common
from shared.consumer import BatchConsumer, GiveUp, RetryPolicy, TaskConsumer
from shared.control import ControlListener
from shared.errors import BrokerUnavailable
from shared.health import Metrics
from shared.jobs import PRIORITY_LEVELS
from shared.messages import Codec, LaneOpened, Message
from shared.topology import Topology
from shared.worker import Handler

Callback = Callable[[Delivered], Awaitable[Any]]
M = TypeVar("M", bound=Message)
TENANT = "acme"


@dataclass
class FakeMessage:
    """A delivery: what the consumer reads, and how it settled it (`ack`, `requeue`, `reject`)."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = field(default_factory=lambda: uuid.uuid4().hex)
    priority: int | None = None
    redelivered: bool | None = False
    settled: list[str] = field(default_factory=list)
    # Settling fails as after a reconnect (a stale delivery tag).
    stale: bool = False

    async def ack(self, multiple: bool = False) -> None:
        self._settle("ack")

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self._settle("requeue" if requeue else "reject")

    def _settle(self, how: str) -> None:
        if self.stale:
            raise ConnectionError("delivery tag is stale")
        self.settled.append(how)


@dataclass
class FakeQueue:
    name: str
    prefetch: int
    callbacks: dict[str, Callback] = field(default_factory=dict)

    async def consume(self, callback: Callback, *, arguments: dict[str, Any] = ...) -> str:  # type: ignore[assignment]
        tag = uuid.uuid4().hex
        self.callbacks[tag] = callback
        return tag

    async def cancel(self, consumer_tag: str) -> None:
        self.callbacks.pop(consumer_tag, None)


@dataclass
class Published:
    """One confirmed message: what was asked (`item`) and where it went (`to`)."""

    item: Outgoing
    to: Route


@dataclass
class Raw:
    """A body put in a queue as it is (a dead letter, a copy into the suspect queue)."""

    queue: str
    body: bytes
    headers: dict[str, Any]


class FakeBroker:
    def __init__(self, prefix: str = "test") -> None:
        self.settings: CommonSettings = load_common(
            "enricher", EnvReader({"LEADFLOW_BROKER_PREFIX": prefix})
        )
        self.topology = Topology(prefix, self.settings.queue_type)
        self.codec = Codec()
        self.published: list[Published] = []
        self.dead: list[Raw] = []  # by queue: the work queue whose dead letters they are
        self.copied: list[Raw] = []
        self.queues: dict[str, FakeQueue] = {}
        # While set, nothing is confirmed: every publish raises `BrokerUnavailable`.
        self.refusing: str | None = None
        self.is_connected = True
        self.lanes: set[tuple[str, str]] = set()

    # -- ConsumerBroker ----------------------------------------------------------------

    async def publish(self, outgoing: Sequence[Outgoing], *, timeout_s: float = 30.0) -> None:
        self._confirm()
        self.published.extend(Published(item, route(item, self.topology)) for item in outgoing)

    async def publish_dead(self, queue: str, body: bytes, headers: dict[str, Any]) -> None:
        self._confirm()
        self.dead.append(Raw(queue, body, headers))

    async def republish(self, queue: str, message: Delivered, headers: dict[str, Any]) -> None:
        self._confirm()
        self.copied.append(Raw(queue, message.body, {**(message.headers or {}), **headers}))

    async def consume_channel(self, queue_name: str, prefetch: int) -> FakeQueue:
        self._confirm()
        return self.queues.setdefault(queue_name, FakeQueue(queue_name, prefetch))

    def _confirm(self) -> None:
        if not self.is_connected:
            raise BrokerUnavailable("broker not connected")
        if self.refusing is not None:
            raise BrokerUnavailable(self.refusing)

    # -- TaskPublisher -----------------------------------------------------------------

    async def ensure_lane(self, kind: str, tenant: str) -> None:
        self._confirm()
        self.lanes.add((kind, tenant))

    # -- driving a consumer ------------------------------------------------------------

    def message(
        self,
        message: Message,
        *,
        headers: dict[str, Any] | None = None,
        priority: str = "normal",
        redelivered: bool = False,
    ) -> FakeMessage:
        return FakeMessage(
            self.codec.encode(message),
            headers=dict(headers or {}),
            priority=PRIORITY_LEVELS[priority],
            redelivered=redelivered,
        )

    async def deliver(self, queue: str, message: FakeMessage) -> FakeMessage:
        """Hand `message` to the consumer of `queue` (awaiting its whole handling)."""
        consumers = self.queues[queue].callbacks
        assert consumers, f"nobody consumes {queue}"
        await next(iter(consumers.values()))(message)
        return message

    def redelivery(self, message: FakeMessage) -> FakeMessage:
        """The same message again, as the broker redelivers it after its consumer died."""
        return FakeMessage(
            message.body,
            headers=dict(message.headers),
            message_id=message.message_id,
            priority=message.priority,
            redelivered=True,
        )

    def as_delivered(self, published: Published | Raw) -> FakeMessage:
        """A published message as its queue delivers it (after the delay tier, if any)."""
        if isinstance(published, Raw):
            return FakeMessage(published.body, headers=dict(published.headers))
        return FakeMessage(
            self.codec.encode(published.item.message),
            headers=dict(published.to.headers),
            priority=PRIORITY_LEVELS[published.item.priority],
        )

    def taken(self) -> list[Published]:
        """What was published since the last call."""
        taken, self.published = self.published, []
        return taken

    async def tell(self, control: Message) -> None:
        """Broadcast on the control stream, as the gateway and router do."""
        await self.deliver(self.topology.control_stream, self.message(control))

    def lane(self, kind: str) -> str:
        """The normal-priority lane of `TENANT` for `kind`."""
        return self.topology.lane_queue(kind, TENANT)


EVENTS_QUEUE = "events"


def batch_consumer(
    broker: FakeBroker,
    handler: Callable[[list[Message]], Awaitable[Sequence[Outgoing]]],
    *,
    max_attempts: int = 3,
) -> BatchConsumer[Message]:
    """The router's kind of consumer, of `EVENTS_QUEUE`, not started (tests hand it batches)."""
    return BatchConsumer(
        broker,
        EVENTS_QUEUE,
        Message,
        handler,
        max_batch=10,
        codec=broker.codec,
        metrics=Metrics(),
        prefetch=10,
        policy=RetryPolicy(max_attempts=max_attempts),
        give_up=lambda _m, _r: (),
    )


async def task_consumer(
    broker: FakeBroker,
    kind: str,
    message_type: type[M],
    handler: Handler[M],
    *,
    give_up: GiveUp[M],
    max_attempts: int = 3,
    split: Callable[[M], list[M]] | None = None,
) -> TaskConsumer[M]:
    """A started task consumer, as a worker runs it, subscribed to `TENANT`'s lanes."""
    control = ControlListener(broker, broker.codec)
    consumer = TaskConsumer(
        broker,
        kind,
        message_type,
        handler,
        control=control,
        concurrency=4,
        codec=broker.codec,
        metrics=Metrics(),
        prefetch=2,
        policy=RetryPolicy(max_attempts=max_attempts, backoff_base_s=1.0, backoff_max_s=8.0),
        give_up=give_up,
        split=split,
    )
    await consumer.start()
    await control.start()
    await broker.tell(LaneOpened(job_id="", tenant=TENANT, kind=kind))
    return consumer
