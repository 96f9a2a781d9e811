"""One process of the broker-ceiling chain (started by `bench.ceiling`, one role each).

    python -m bench.hop publish --queue Q1 --count N --size 600 --window 500
    python -m bench.hop relay --source Q1 --target Q2 --count N --prefetch 256
    python -m bench.hop sink --source Q2 --count N --prefetch 256

Raw aio-pika, the way leadflow uses it: persistent messages, `mandatory`, publisher
confirms awaited before the consumed message is acked, one channel to consume and one
to publish. Each process reports on stdout, one JSON object a line: `ready` once it
consumes (or, for the publisher, once connected), `done` with its timings. Times are
`time.monotonic()`, which on Linux is one clock for every process on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bench.amqp import AMQP_URL


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def message(body: bytes) -> aio_pika.Message:
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def publish(queue: str, count: int, size: int, window: int) -> None:
    """Publish `count` messages, at most `window` awaiting their confirm at once."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        emit("ready")
        cpu_before, started = time.process_time(), time.monotonic()
        slots = asyncio.Semaphore(window)
        body = b"x" * size

        async def one() -> None:
            try:
                await channel.default_exchange.publish(
                    message(body), routing_key=queue, mandatory=True
                )
            finally:
                slots.release()

        tasks = []
        for _ in range(count):
            await slots.acquire()
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        emit(
            "done", started=started, ended=time.monotonic(), cpu_s=time.process_time() - cpu_before
        )
    finally:
        await connection.close()


async def consume(source: str, target: str | None, count: int, prefetch: int) -> None:
    """Ack `count` messages from `source`, republishing each to `target` first if given."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=prefetch)
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await consume_channel.declare_queue(source, passive=True)
        sink = Sink(count, publish_channel, target)
        await queue.consume(sink.on_message)
        emit("ready")
        await sink.done.wait()
        emit(
            "done",
            first=sink.first_at,
            last=sink.last_at,
            cpu_s=time.process_time() - sink.cpu_at_first,
        )
    finally:
        await connection.close()


class Sink:
    def __init__(self, count: int, channel: AbstractChannel, target: str | None) -> None:
        self.count = count
        self.channel = channel
        self.target = target
        self.seen = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.cpu_at_first = 0.0
        self.done = asyncio.Event()

    async def on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self.seen == 0:
            self.first_at, self.cpu_at_first = time.monotonic(), time.process_time()
        if self.target is not None:
            await self.channel.default_exchange.publish(
                message(incoming.body), routing_key=self.target, mandatory=True
            )
        await incoming.ack()
        self.seen += 1
        if self.seen >= self.count:
            self.last_at = time.monotonic()
            self.done.set()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hop")
    parser.add_argument("role", choices=("publish", "relay", "sink"))
    parser.add_argument("--queue", "--source", dest="source", required=True)
    parser.add_argument("--target")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--prefetch", type=int, default=256)
    args = parser.parse_args()
    if args.role == "publish":
        asyncio.run(publish(args.source, args.count, args.size, args.window))
    else:
        target = args.target if args.role == "relay" else None
        asyncio.run(consume(args.source, target, args.count, args.prefetch))


if __name__ == "__main__":
    main()
