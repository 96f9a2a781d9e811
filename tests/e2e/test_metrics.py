"""Every service's /metrics carries what operators watch, with real values after a job."""

from __future__ import annotations

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import Api, wait_until
from tests.unit.test_grafana_dashboard import METRICS as DASHBOARD_METRICS

pytestmark = pytest.mark.e2e


async def metrics_of(http: aiohttp.ClientSession, stack: Stack, service: str) -> dict[str, float]:
    async with http.get(f"{stack.url(service)}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(value for name, value in samples.items() if name.startswith(prefix))


async def test_services_export_the_operating_metrics(
    stack: Stack, api: Api, http: aiohttp.ClientSession
) -> None:
    job = await api.submit({"leads": make_leads(60, seed=701)})
    scrape = await api.submit_scrape(
        {"source": "sandbox", "query": {"keywords": "cto"}, "max_pages": 2}
    )
    await api.wait_job(job["job_id"])
    await api.wait_job(scrape["job_id"])

    async def router_counted() -> dict[str, float] | None:
        samples = await metrics_of(http, stack, "router")
        done = 'leadflow_jobs{state="completed"}'
        return samples if samples.get(done, 0) >= 2 else None

    router = await wait_until(router_counted, timeout_s=30, what="the jobs gauge refreshed")
    assert total(router, "leadflow_lead_outcomes_total") >= 60 + 50
    assert total(router, 'leadflow_messages_consumed_total{outcome="ack"') > 0
    assert "leadflow_jobs_stalled" in router

    enricher = await metrics_of(http, stack, "enricher")
    assert total(enricher, 'leadflow_provider_calls_total{outcome="found",provider="alpha"}') > 0
    assert total(enricher, 'leadflow_provider_call_seconds_count{provider="alpha"}') > 0
    assert total(enricher, "leadflow_messages_published_total") > 0

    scraper = await metrics_of(http, stack, "scraper")
    assert total(scraper, 'leadflow_source_requests_total{outcome="ok",source="sandbox"}') == 2

    async def lag_sampled() -> bool:
        samples = await metrics_of(http, stack, "enricher")
        return any(name.startswith("leadflow_queue_messages_ready{") for name in samples)

    await wait_until(lag_sampled, timeout_s=30, what="queue lag sampled")
    gateway = await metrics_of(http, stack, "gateway")
    assert total(gateway, "leadflow_messages_published_total") > 0
    assert "leadflow_gateway_event_streams" in gateway


async def test_every_metric_the_dashboard_charts_is_served(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    texts = []
    for service in ("gateway", "enricher", "scraper", "router"):
        async with http.get(f"{stack.url(service)}/metrics") as response:
            texts.append(await response.text())
    served = "\n".join(texts)
    missing = [
        name
        for name in DASHBOARD_METRICS
        if f"# TYPE {name.removesuffix('_bucket').removesuffix('_total')}" not in served
    ]
    assert missing == []
