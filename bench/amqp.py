"""The broker as the benchmark sees it: its URL, and removing what a run declared.

Every run declares its queues and exchanges under a prefix of its own, and removes them
afterwards, so runs never see each other's messages and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import aio_pika
from aio_pika.abc import AbstractConnection

from shared.topology import WORK_KINDS, Topology

AMQP_PORT = 5672
AMQP_URL = f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/"
CONSUMER_POLL_S = 0.1


def unique_prefix(kind: str) -> str:
    return f"lfbench-{kind}-{secrets.token_hex(3)}"


async def delete_names(queues: list[str], exchanges: list[str], url: str = AMQP_URL) -> None:
    """Delete queues and exchanges; a missing one is not an error."""
    connection = await aio_pika.connect(url)
    try:
        for queue in queues:
            await _delete(connection, "queue", queue)
        for exchange in exchanges:
            await _delete(connection, "exchange", exchange)
    finally:
        await connection.close()


async def _delete(connection: AbstractConnection, kind: str, name: str) -> None:
    # A failed delete closes its channel, so each one gets a channel of its own.
    channel = await connection.channel()
    with contextlib.suppress(aio_pika.exceptions.AMQPError):
        if kind == "queue":
            await channel.queue_delete(name)
        else:
            await channel.exchange_delete(name)
    if not channel.is_closed:
        await channel.close()


async def delete_leadflow_topology(prefix: str, url: str = AMQP_URL) -> None:
    """Remove every queue and exchange the services declared under `prefix` (the bench
    runs as the dev tenant, whose lanes are declared on demand)."""
    topology = Topology(prefix)
    lanes = [lane for kind in WORK_KINDS for lane in topology.lane_queues(kind, "default")]
    await delete_names(
        [*(spec.name for spec in topology.queues()), *lanes],
        [spec.name for spec in topology.exchanges()],
        url,
    )


async def consumer_count(queue: str, url: str = AMQP_URL) -> int:
    """Consumers on `queue` (0 when it does not exist yet)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        return declared.declaration_result.consumer_count or 0
    finally:
        await connection.close()


async def wait_for_consumer(queue: str, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await consumer_count(queue) == 0:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no consumer on {queue} after {timeout_s:g}s")
        await asyncio.sleep(CONSUMER_POLL_S)
