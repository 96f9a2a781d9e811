"""Tenant names stay out of metric labels unless `LEADFLOW_METRICS_TENANT_LABELS=true`:
the label function, the lag gauge (lanes summed under one label) and the consumer's
counters, read back from the service's `/metrics` registry."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from shared.broker import Broker
from shared.config import EnvReader, load_common
from shared.consumer import RetryPolicy, _Consumer
from shared.health import Metrics
from shared.labels import queue_label
from shared.lag import sample_once
from shared.messages import Codec, EnrichTask
from shared.topology import Topology

TOPOLOGY = Topology("leadflow")


@pytest.mark.parametrize(
    ("queue", "hidden"),
    [
        ("leadflow.enrich.tenant.acme", "leadflow.enrich.tenant.*"),
        ("leadflow.scrape.tenant.globex-inc", "leadflow.scrape.tenant.*"),
        ("leadflow.enrich.suspect", "leadflow.enrich.suspect"),
        ("leadflow.enrich", "leadflow.enrich"),
        ("leadflow.router.events", "leadflow.router.events"),
    ],
)
def test_lanes_are_labelled_without_their_tenant(queue: str, hidden: str) -> None:
    assert queue_label(TOPOLOGY, queue, tenant_labels=False) == hidden
    assert queue_label(TOPOLOGY, queue, tenant_labels=True) == queue


def broker(tenant_labels: str | None, metrics: Metrics) -> Broker:
    env = {"LEADFLOW_METRICS_TENANT_LABELS": tenant_labels} if tenant_labels else {}
    return Broker(load_common("enricher", EnvReader(env)), Codec(), metrics)


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


async def lag_of(tenant_labels: str | None, monkeypatch: pytest.MonkeyPatch) -> str:
    metrics = Metrics()
    service_broker = broker(tenant_labels, metrics)
    ready = {"leadflow.enrich.tenant.acme": 3, "leadflow.enrich.tenant.globex": 4}

    async def queue_stats(queue: str) -> tuple[int, int]:
        return ready.get(queue, 0), 1

    monkeypatch.setattr(service_broker, "queue_stats", queue_stats)
    await sample_once(service_broker, metrics, ["leadflow.enrich.suspect", *ready])
    return exposition(metrics)


async def test_lag_sums_the_lanes_under_a_tenant_free_label(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = await lag_of(None, monkeypatch)
    assert 'leadflow_queue_messages_ready{queue="leadflow.enrich.tenant.*"} 7.0' in text
    assert 'leadflow_queue_messages_ready{queue="leadflow.enrich.suspect"} 0.0' in text
    assert "acme" not in text
    assert "globex" not in text


async def test_lag_names_each_lane_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    text = await lag_of("true", monkeypatch)
    assert 'leadflow_queue_messages_ready{queue="leadflow.enrich.tenant.acme"} 3.0' in text
    assert 'leadflow_queue_messages_ready{queue="leadflow.enrich.tenant.globex"} 4.0' in text


@pytest.mark.parametrize(
    ("tenant_labels", "label"),
    [(None, "leadflow.enrich.tenant.*"), ("true", "leadflow.enrich.tenant.acme")],
)
def test_consumer_counters_follow_the_setting(tenant_labels: str | None, label: str) -> None:
    metrics = Metrics()
    consumer = _Consumer(
        broker(tenant_labels, metrics),
        "leadflow.enrich.tenant.acme",
        EnrichTask,
        codec=Codec(),
        metrics=metrics,
        prefetch=1,
        policy=RetryPolicy(),
        give_up=lambda _task, _reason: (),
    )
    consumer.count("ack", 0.01)

    text = exposition(metrics)
    assert f'leadflow_messages_consumed_total{{outcome="ack",queue="{label}"}} 1.0' in text
    assert f'leadflow_message_handle_seconds_count{{queue="{label}"}} 1.0' in text
