"""A broker connection over a list of nodes: it takes the first node that answers, and
when its node goes it moves to another, where its consumers are restored.

The "nodes" are TCP proxies in front of the shared broker (one of them refusing): the
failover logic is the client's, and a proxy that stops listening is, to the client, a
node that went away. The real three-node cluster is in tests/faults/test_cluster.py."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.broker import Broker
from shared.config import EnvReader, load_common
from shared.health import Metrics
from shared.messages import Codec
from tests.helpers import AMQP_URL, delete_topology, free_port, wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e


@pytest.fixture
async def proxies() -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    first, second = TcpProxy(5672), TcpProxy(5672)
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


async def test_connects_to_the_first_node_that_answers_and_moves_when_it_goes(
    proxies: tuple[TcpProxy, TcpProxy],
) -> None:
    first, second = proxies
    prefix = f"nodes{secrets.token_hex(4)}"
    nobody = free_port()
    urls = ",".join(
        f"amqp://guest:guest@127.0.0.1:{port}/" for port in (nobody, first.port, second.port)
    )
    settings = load_common(
        "enricher", EnvReader({"LEADFLOW_AMQP_URL": urls, "LEADFLOW_BROKER_PREFIX": prefix})
    )
    broker = Broker(settings, Codec(), Metrics())
    received: list[bytes] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        received.append(message.body)
        await message.ack()

    broker.start()
    try:
        await asyncio.wait_for(broker.wait_ready(), 30)
        assert broker.node == f"127.0.0.1:{first.port}", "the refusing node is skipped"
        assert broker.ready_details() == {"node": f"127.0.0.1:{first.port}"}
        dead = broker.topology.dead_queue(broker.topology.work_queue("enrich"))
        queue = await broker.consume_channel(dead, prefetch=10)
        await queue.consume(on_message)
        await broker.publish_dead(broker.topology.work_queue("enrich"), b"before", {})
        await wait_until(lambda: _async(received == [b"before"]), what="delivery on node 1")

        await first.stop()  # the node goes: its listener and every connection
        assert await wait_until(
            lambda: _async(broker.node == f"127.0.0.1:{second.port}"),
            timeout_s=30,
            what="moved to the next node",
        )
        assert await broker.readiness() is None

        await broker.publish_dead(broker.topology.work_queue("enrich"), b"after", {})
        await wait_until(
            lambda: _async(received == [b"before", b"after"]),
            timeout_s=30,
            what="the consumer restored on the new node",
        )
    finally:
        await broker.close()
        await delete_topology(prefix, AMQP_URL)


async def _async(value: bool) -> bool:
    return value
