"""Queue lag as a service sees it: the messages waiting in the queues it consumes,
sampled now and then into the `leadflow_queue_messages_ready` gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from shared.broker import Broker
from shared.errors import BrokerUnavailable
from shared.health import Metrics

SAMPLE_EVERY_S = 5.0


async def sample_lag(broker: Broker, metrics: Metrics, queues: Callable[[], Iterable[str]]) -> None:
    """Forever: every few seconds, the ready count of each queue `queues()` names."""
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        for queue in list(queues()):
            try:
                ready, _ = await broker.queue_stats(queue)
            except BrokerUnavailable:
                continue  # disconnected or gone: the next round tries again
            metrics.queue_ready.labels(queue=queue).set(ready)
