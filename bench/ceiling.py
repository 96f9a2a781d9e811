"""The broker ceiling: raw aio-pika through 1, 2 and 3 hops between separate processes.

A hop is publish (persistent, confirmed, ~500 in flight) -> durable queue -> consume
(prefetch ~256) in another process. Two hops put a relay in between that republishes
each message with a confirm before acking it; three hops, two relays. The figure is
messages from the publisher's first publish to the sink's last ack, per second: what
any Python service chain on this broker and these cores could hope for at best. Each
is measured `broker_repeats` times and the best kept: on a shared machine noise only
ever takes throughput away, so the best try is the closest to the ceiling.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from dataclasses import dataclass
from typing import Any

import aio_pika

from bench.amqp import AMQP_PORT, AMQP_URL, delete_names, unique_prefix
from bench.config import BenchConfig
from bench.procs import CpuMeter, listener_pid, stop_async_process
from bench.report import RunReport, Scenario, rate

READY_TIMEOUT_S = 30.0


@dataclass
class Hop:
    role: str
    proc: asyncio.subprocess.Process


async def declare(queues: list[str]) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for name in queues:
            await channel.declare_queue(name, durable=True)
    finally:
        await connection.close()


async def spawn(role: str, *args: str) -> Hop:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.hop", role, *args, stdout=asyncio.subprocess.PIPE
    )
    return Hop(role, proc)


async def expect(hop: Hop, event: str, timeout_s: float) -> dict[str, Any]:
    """The next line of `hop` that reports `event`; an error if it exits first."""
    assert hop.proc.stdout is not None
    async with asyncio.timeout(timeout_s):
        while line := await hop.proc.stdout.readline():
            report: dict[str, Any] = json.loads(line)
            if report.get("event") == event:
                return report
    raise RuntimeError(f"{hop.role} exited ({await hop.proc.wait()}) before reporting {event}")


async def measure(hops: int, config: BenchConfig) -> dict[str, Any]:
    prefix = unique_prefix("ceiling")
    queues = [f"{prefix}.q{i}" for i in range(hops)]
    chain: list[Hop] = []
    try:
        await declare(queues)
        await start_consumers(chain, queues, config)
        return await run_chain(chain, queues[0], config)
    finally:
        for hop in chain:
            await stop_async_process(hop.proc)
        await delete_names(queues, [])


async def start_consumers(chain: list[Hop], queues: list[str], config: BenchConfig) -> None:
    """The sink on the last queue, a relay between each pair; back once all consume."""
    common = ("--count", str(config.broker_messages), "--prefetch", str(config.consumer_prefetch))
    chain.append(await spawn("sink", "--source", queues[-1], *common))
    for source, target in itertools.pairwise(queues):
        chain.append(await spawn("relay", "--source", source, "--target", target, *common))
    for hop in chain:
        await expect(hop, "ready", READY_TIMEOUT_S)


async def run_chain(chain: list[Hop], first_queue: str, config: BenchConfig) -> dict[str, Any]:
    timeout_s = config.timeout_s(config.broker_messages, floor_s=30.0, min_rate=50.0)
    publisher = await spawn(
        "publish",
        "--queue",
        first_queue,
        "--count",
        str(config.broker_messages),
        "--size",
        str(config.message_bytes),
        "--window",
        str(config.publish_window),
    )
    chain.append(publisher)
    broker_pid = listener_pid(AMQP_PORT)
    meter = CpuMeter({"rabbitmq": broker_pid} if broker_pid else {})
    await expect(publisher, "ready", READY_TIMEOUT_S)
    meter.start()
    published = await expect(publisher, "done", timeout_s)
    received = await expect(chain[0], "done", timeout_s)
    relayed = [await expect(hop, "done", timeout_s) for hop in chain[1:-1]]
    broker_cpu = meter.stop().get("rabbitmq")
    elapsed = received["last"] - published["started"]
    count = config.broker_messages
    return {
        "msgs_per_s": round(count / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "publish_only_msgs_per_s": round(count / (published["ended"] - published["started"]), 1),
        "cpu_ms_per_msg": {
            "publisher": round(published["cpu_s"] * 1000 / count, 3),
            "relays": [round(r["cpu_s"] * 1000 / count, 3) for r in relayed],
            "sink": round(received["cpu_s"] * 1000 / count, 3),
            "rabbitmq": round(broker_cpu * 1000 / count, 3) if broker_cpu is not None else None,
        },
    }


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    scenario = Scenario("broker")
    results = {}
    for hops in config.broker_hops:
        tries = [await measure(hops, config) for _ in range(config.broker_repeats)]
        measured = max(tries, key=lambda each: float(each["msgs_per_s"]))
        measured["all_msgs_per_s"] = [each["msgs_per_s"] for each in tries]
        results[str(hops)] = measured
        cpu = measured["cpu_ms_per_msg"]
        scenario.row(
            f"{hops} hop{'s' if hops > 1 else ''}",
            rate(measured["msgs_per_s"], "msg/s"),
            f"publisher alone {rate(measured['publish_only_msgs_per_s'], 'msg/s')}; CPU/msg: "
            f"pub {cpu['publisher']} ms, sink {cpu['sink']} ms, broker {cpu['rabbitmq']} ms",
        )
    scenario.figures = {
        "messages": config.broker_messages,
        "message_bytes": config.message_bytes,
        "publish_window": config.publish_window,
        "prefetch": config.consumer_prefetch,
        "repeats": config.broker_repeats,
        "hops": results,
    }
    scenario.notes.append(
        "classic durable queues, persistent messages, confirms; the broker is shared with "
        "other runs on this machine, so its CPU figure is indicative only"
    )
    return scenario
