"""Queue lag as a service sees it: the messages waiting in the queues it consumes,
sampled now and then into the `leadflow_queue_messages_ready` gauge.

Lanes are labelled without their tenant unless `LEADFLOW_METRICS_TENANT_LABELS` is on
(shared/labels.py); the lanes sharing a label are summed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable

from shared.broker import Broker
from shared.errors import BrokerUnavailable
from shared.health import Metrics
from shared.labels import queue_label

SAMPLE_EVERY_S = 5.0


async def sample_lag(broker: Broker, metrics: Metrics, queues: Callable[[], Iterable[str]]) -> None:
    """Forever: every few seconds, the ready count of each queue `queues()` names."""
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        await sample_once(broker, metrics, queues())


async def sample_once(broker: Broker, metrics: Metrics, queues: Iterable[str]) -> None:
    ready: dict[str, int] = defaultdict(int)
    unknown: set[str] = set()
    tenant_labels = broker.settings.metrics_tenant_labels
    for queue in list(queues):
        label = queue_label(broker.topology, queue, tenant_labels)
        try:
            count, _ = await broker.queue_stats(queue)
        except BrokerUnavailable:
            unknown.add(label)  # disconnected or gone: the next round tries again
            continue
        ready[label] += count
    for label, count in ready.items():
        if label not in unknown:  # a partial sum would show a drop that did not happen
            metrics.queue_ready.labels(queue=label).set(count)
