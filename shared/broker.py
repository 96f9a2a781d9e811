"""Broker wiring: a robust connection to a node of the cluster, the topology, confirmed
publishing.

`Broker.start()` returns at once and connects in the background (retrying until a node
answers), so a service starts, serves `/readyz` (503 while disconnected) and recovers on
its own. With several nodes (`LEADFLOW_AMQP_URL` listing a cluster's), the connection
goes to the first that answers and, when its node goes, to another one, where every
channel, exchange, queue and consumer is declared again (`NodeListConnection`).

Publishing is persistent, mandatory (an unroutable message raises
instead of vanishing) and waits for publisher confirms, pipelined: a batch of messages
is in flight together and the call returns when the broker confirmed every one.

`ConsumerBroker`, `Subscription` and `Delivered` are what the consumers (shared/consumer.py)
use of all this, and `TaskPublisher` what starting work uses: the seams where tests put an
in-memory broker (tests/fakebroker.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractRobustChannel,
    AbstractRobustQueue,
)
from yarl import URL

from shared import tracing
from shared.config import CommonSettings
from shared.errors import BrokerUnavailable
from shared.health import Metrics
from shared.jobs import PRIORITY_LEVELS
from shared.logging import get_logger
from shared.messages import Codec, Message, routing_key, tag_of
from shared.topology import QueueSpec, Topology

log = get_logger(__name__)

ATTEMPT_HEADER = "x-leadflow-attempt"
HISTORY_HEADER = "x-leadflow-history"
ERROR_HEADER = "x-leadflow-error"
CRASHES_HEADER = "x-leadflow-crashes"
RECONNECT_INTERVAL_S = 1.0
# One node's connection attempt (TCP, TLS and AMQP handshake): a node that does not answer
# within it is skipped for the next.
CONNECT_TIMEOUT_S = 10.0

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    RuntimeError,  # aio-pika raises it for operations on a closed channel/connection
)


@dataclass(frozen=True)
class Publish:
    """To the message's exchange by its routing key (a task: its priority's lane)."""

    message: Message
    priority: str = "normal"


@dataclass(frozen=True, kw_only=True)
class Resent:
    """What a message handled before carries on when it is sent again: its attempt count,
    priority, and headers (the reason, `headers[ERROR_HEADER]`; the crash count)."""

    attempt: int
    priority: str = "normal"
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delayed(Resent):
    """Through the delay tier of the message's exchange: back in its queue after `delay_s`."""

    message: Message
    delay_s: float


@dataclass(frozen=True)
class DeadLetter(Resent):
    """Into the dead-letter queue of the work queue `of`."""

    message: Message
    of: str


@dataclass(frozen=True)
class ToQueue(Resent):
    """Straight into `queue` (a suspect queue), past every exchange."""

    message: Message
    queue: str


# A message to publish: exactly one of these ways, so no flag takes precedence over another.
Outgoing = Publish | Delayed | DeadLetter | ToQueue


class Delivered(Protocol):
    """A message as delivered to a consumer (aio-pika's `AbstractIncomingMessage`)."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, Any]: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def redelivered(self) -> bool | None: ...

    async def ack(self, multiple: bool = False) -> None: ...

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


class Subscription(Protocol):
    """A queue consumed on a channel of its own (aio-pika's `AbstractRobustQueue`)."""

    @property
    def name(self) -> str: ...

    async def consume(
        self, callback: Callable[[Delivered], Awaitable[Any]], *, arguments: dict[str, Any] = ...
    ) -> Any: ...

    async def cancel(self, consumer_tag: str) -> Any: ...


class ConsumerBroker(Protocol):
    """What a consumer needs of the broker: confirmed publishing, dead letters, copies into
    a queue, and queues to consume from. `Broker` is the real one."""

    @property
    def topology(self) -> Topology: ...
    @property
    def settings(self) -> CommonSettings: ...

    async def publish(self, outgoing: Sequence[Outgoing], *, timeout_s: float = 30.0) -> None: ...

    async def publish_dead(self, queue: str, body: bytes, headers: dict[str, Any]) -> None: ...

    async def republish(self, queue: str, message: Delivered, headers: dict[str, Any]) -> None: ...

    async def consume_channel(self, queue_name: str, prefetch: int) -> Subscription: ...


@dataclass(frozen=True)
class Route:
    """Where and how an `Outgoing` is published: exchange, routing key, AMQP headers, and
    the per-message expiration of a delayed one."""

    exchange: str
    key: str
    headers: dict[str, Any]
    expiration_s: float | None = None


def route(item: Outgoing, topology: Topology) -> Route:
    key = routing_key(item.message)
    if key.startswith("task."):
        key = topology.task_key(key, item.priority)  # the lane of its priority
    exchange = topology.exchange_for(key)
    match item:
        case Publish():
            return Route(exchange, key, {ATTEMPT_HEADER: 0})
        case Delayed(delay_s=delay_s):
            tier = topology.retry_name(exchange, topology.retry_tier(delay_s))
            headers = {ATTEMPT_HEADER: item.attempt, **item.headers}
            # Jitter inside a retry tier: the message expires before the tier's own TTL.
            return Route(tier, key, headers, max(delay_s, 0.001))
        case DeadLetter(of=of):
            return Route(topology.dead_exchange, of, {ATTEMPT_HEADER: item.attempt, **item.headers})
        case ToQueue(queue=queue):
            return Route("", queue, {ATTEMPT_HEADER: item.attempt, **item.headers})


class TaskPublisher(Protocol):
    """What starting work needs of the broker (shared/tasks.py, the gateway's submitter):
    tenants' lanes declared, and tasks published with confirms. `Broker` is the real one."""

    @property
    def is_connected(self) -> bool: ...

    async def ensure_lane(self, kind: str, tenant: str) -> None: ...

    async def publish(self, outgoing: Sequence[Outgoing], *, timeout_s: float = 30.0) -> None: ...


class NodeListConnection(aio_pika.RobustConnection):
    """A robust connection to whichever of a cluster's nodes answers.

    aio-pika's `RobustConnection` reconnects to the one URL it was given: its reconnection
    loop (`__connection_factory`) calls `__connect_transport`, which connects to `self.url`
    (aio-pika 10, robust_connection.py; a list of hosts is its open issue #141, and a
    round-robin subclass like this one was proposed in its PR #680). This class overrides
    that one step: an attempt tries the nodes in turn (the first answering one wins),
    starting after the node just lost, so a connection whose node went moves to a live
    one. The rest is `RobustConnection`'s: on the new node every channel is reopened with
    its QoS, and its exchanges, queues, bindings and consumers are declared again.
    `tests/unit/test_node_list.py` pins the private name this relies on."""

    def __init__(self, urls: Sequence[URL]) -> None:
        super().__init__(urls[0])
        self.nodes = tuple(urls)
        self._node = 0

    @property
    def node(self) -> str:
        url = self.nodes[self._node]
        return f"{url.host}:{url.port}"

    async def _RobustConnection__connect_transport(self) -> None:
        # After a connection was lost (or none made yet on the first node), begin with the
        # next node: the lost one is likely the one that stopped.
        start = self._node + (1 if self.connection_attempt else 0)
        last_error: BaseException | None = None
        for step in range(len(self.nodes)):
            index = (start + step) % len(self.nodes)
            self._node = index
            self.url = self.nodes[index]
            try:
                await super()._RobustConnection__connect_transport()  # type: ignore[misc]
            except aio_pika.exceptions.CONNECTION_EXCEPTIONS as e:
                log.warning("broker.node_unavailable", node=self.node, error=str(e) or repr(e))
                last_error = e
                continue
            return
        assert last_error is not None
        raise last_error


class Broker:
    def __init__(self, settings: CommonSettings, codec: Codec, metrics: Metrics) -> None:
        self.settings = settings
        self.topology = Topology(settings.broker_prefix, settings.queue_type)
        self._codec = codec
        self._metrics = metrics
        self._connection: NodeListConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._consume_channels: list[AbstractRobustChannel] = []
        # Strong references: a robust consumer on a queue nobody references may not be restored.
        self._queues: list[AbstractRobustQueue] = []
        self._lanes: set[tuple[str, str]] = set()
        self._ready = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._setup_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._connect_task = asyncio.create_task(self._connect(), name="broker-connect")

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def close(self) -> None:
        if self._connect_task is not None:
            self._connect_task.cancel()
            await asyncio.gather(self._connect_task, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._ready.clear()

    @property
    def is_connected(self) -> bool:
        """Connected, and able to publish: after a move to another node the connection is
        back before its publishing channel is restored, and a publish in between fails."""
        conn = self._connection
        channel = self._publish_channel
        return (
            self._ready.is_set()
            and conn is not None
            and not conn.is_closed
            and conn.connected.is_set()
            and (channel is None or not channel.is_closed)
        )

    @property
    def node(self) -> str | None:
        """`host:port` of the node connected to, None while disconnected."""
        conn = self._connection
        return conn.node if conn is not None and self.is_connected else None

    def ready_details(self) -> dict[str, str | None]:
        """What `/readyz` shows beside the status: the broker node in use."""
        return {"node": self.node}

    async def readiness(self) -> str | None:
        if self.is_connected:
            return None
        if self._setup_error is not None:
            return f"broker topology not declared: {self._setup_error}"
        return "broker not connected" if self._ready.is_set() else "broker not connected yet"

    async def _connect(self) -> None:
        urls = [
            URL(url).update_query(
                name=f"leadflow-{self.settings.service}",
                fail_fast="false",
                reconnect_interval=str(RECONNECT_INTERVAL_S),
            )
            for url in self.settings.amqp_urls
        ]
        while True:
            try:
                connection = NodeListConnection(urls)
                await connection.connect(timeout=CONNECT_TIMEOUT_S)
                break
            except BROKER_ERRORS as e:  # a URL the robust loop itself cannot retry
                log.warning("broker.connect_failed", error=str(e))
                await asyncio.sleep(RECONNECT_INTERVAL_S)
        self._connection = connection
        connection.reconnect_callbacks.add(self._on_reconnect)
        connection.close_callbacks.add(self._on_close)
        while True:  # a hiccup, or a queue declared with other arguments, is retried
            try:
                self._publish_channel = await self._open_channel()
                await self._declare(self._publish_channel)
                break
            except BROKER_ERRORS as e:
                self._setup_error = f"{type(e).__name__}: {e}"
                log.error("broker.topology_failed", error=self._setup_error)
                await asyncio.sleep(RECONNECT_INTERVAL_S)
        self._setup_error = None
        self._ready.set()
        log.info("broker.connected", prefix=self.topology.prefix, node=connection.node)

    def _on_reconnect(self, *_: Any) -> None:
        log.info("broker.reconnected", node=self._connection and self._connection.node)

    def _on_close(self, *_: Any) -> None:
        log.warning("broker.disconnected")

    async def _open_channel(self) -> AbstractRobustChannel:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        assert isinstance(channel, AbstractRobustChannel)
        return channel

    async def _declare(self, channel: AbstractRobustChannel) -> None:
        for spec in self.topology.exchanges():
            self._exchanges[spec.name] = await channel.declare_exchange(
                spec.name, type=spec.type, durable=True
            )
        self._exchanges[""] = channel.default_exchange
        for queue_spec in self.topology.queues():
            await self._declare_queue(channel, queue_spec)

    async def _declare_queue(
        self, channel: AbstractRobustChannel, spec: QueueSpec
    ) -> AbstractRobustQueue:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        assert isinstance(queue, AbstractRobustQueue)
        for exchange, key in spec.bindings:
            await queue.bind(self._exchanges[exchange], routing_key=key)
        return queue

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, outgoing: Sequence[Outgoing], *, timeout_s: float = 30.0) -> None:
        """Publish all, persistent and mandatory; return once the broker confirmed every one."""
        if not outgoing:
            return
        if not self.is_connected:
            raise BrokerUnavailable("broker not connected")
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self._publish_one(item) for item in outgoing)), timeout_s
            )
        except TimeoutError as e:
            raise BrokerUnavailable(f"broker did not confirm within {timeout_s:g}s") from e
        except aio_pika.exceptions.DeliveryError as e:
            raise BrokerUnavailable(f"broker refused the message: {e}") from e
        except BROKER_ERRORS as e:
            raise BrokerUnavailable(f"publish failed: {type(e).__name__}: {e}") from e

    async def _publish_one(self, item: Outgoing) -> None:
        to = route(item, self.topology)
        amqp_message = aio_pika.Message(
            self._codec.encode(item.message),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=PRIORITY_LEVELS.get(item.priority, PRIORITY_LEVELS["normal"]),
            message_id=uuid.uuid4().hex,
            type=tag_of(item.message),
            # The trace of the work that publishes it, unless the message carries its own.
            headers={**tracing.carrier(), **to.headers},
            expiration=to.expiration_s,
        )
        await self._exchanges[to.exchange].publish(amqp_message, routing_key=to.key, mandatory=True)
        self._metrics.published.labels(routing_key=tag_of(item.message)).inc()

    async def ensure_lane(self, kind: str, tenant: str) -> None:
        """Declare a tenant's lanes for a kind of work (once per process)."""
        if (kind, tenant) in self._lanes:
            return
        if self._publish_channel is None or not self.is_connected:
            raise BrokerUnavailable("broker not connected")
        try:
            for spec in self.topology.lane_specs(kind, tenant):
                await self._declare_queue(self._publish_channel, spec)
        except BROKER_ERRORS as e:
            raise BrokerUnavailable(f"cannot declare the {kind} lane of {tenant}: {e}") from e
        self._lanes.add((kind, tenant))

    async def publish_dead(self, queue: str, body: bytes, headers: dict[str, Any]) -> None:
        """Put a raw message in `queue`'s dead-letter queue, with the reason in its headers."""
        await self._publish_raw(self.topology.dead_exchange, queue, body, headers, None)

    async def republish(self, queue: str, message: Delivered, headers: dict[str, Any]) -> None:
        """Copy a delivered message into `queue` as it is, with extra headers."""
        merged = {**(message.headers or {}), **headers}
        await self._publish_raw("", queue, message.body, merged, message.priority)

    async def _publish_raw(
        self, exchange: str, key: str, body: bytes, headers: dict[str, Any], priority: int | None
    ) -> None:
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
            priority=priority,
            message_id=uuid.uuid4().hex,
        )
        if not self.is_connected:
            raise BrokerUnavailable("broker not connected")
        try:
            await self._exchanges[exchange].publish(message, routing_key=key, mandatory=True)
        except BROKER_ERRORS as e:
            raise BrokerUnavailable(f"publish to {key} failed: {e}") from e

    async def consumer_count(self, queue_name: str) -> int:
        """How many consumers `queue_name` has now."""
        return (await self.queue_stats(queue_name))[1]

    async def queue_stats(self, queue_name: str) -> tuple[int, int]:
        """(messages ready, consumers) of a queue: a passive declare on a throwaway channel."""
        if self._connection is None or not self.is_connected:
            raise BrokerUnavailable("broker not connected")
        try:
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(queue_name, passive=True)
                result = queue.declaration_result
                return int(result.message_count or 0), int(result.consumer_count or 0)
            finally:
                await channel.close()
        except BROKER_ERRORS as e:
            raise BrokerUnavailable(f"cannot inspect {queue_name}: {e}") from e

    # -- consuming ---------------------------------------------------------------------

    async def consume_channel(self, queue_name: str, prefetch: int) -> AbstractRobustQueue:
        """A channel of its own with `prefetch`, and the queue object to consume from."""
        channel = await self._open_channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await self._declare_queue(channel, self.topology.spec_of(queue_name))
        self._consume_channels.append(channel)
        self._queues.append(queue)
        return queue


async def settle(message: Delivered, *, requeue: bool | None = None) -> bool:
    """Ack (or nack with requeue); False when it could not be done. After a reconnect the
    delivery tag is stale: the broker has already put the message back and will redeliver
    it, so that is logged, not raised."""
    try:
        if requeue is None:
            await message.ack()
        else:
            await message.nack(requeue=requeue)
    except BROKER_ERRORS as e:
        log.warning("message.settle_failed_will_redeliver", error=f"{type(e).__name__}: {e}")
        return False
    return True
