"""One trace per job across processes: the gateway's POST, each task, each provider call,
the router's store batches and each webhook delivery, exported over OTLP/HTTP to a
receiver in the test (the services are real processes, so an in-memory exporter cannot see
them). Logs carry the trace id; the POST answer and the webhook POST carry `traceparent`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.helpers import Api, WebhookReceiver, serve_on_loopback, wait_until

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]


@dataclass
class OtlpReceiver:
    """The trace half of an OTLP/HTTP collector: records every span it is sent."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner, self.port = await serve_on_loopback("/v1/traces", self._receive)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]

    async def _receive(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_a_job_is_one_trace_from_the_post_to_the_last_webhook_delivery(
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
    otlp: OtlpReceiver,
) -> None:
    stack = stack_factory(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    await asyncio.to_thread(stack.start)
    body = {
        "leads": make_leads(60, seed=313),
        "destinations": [{"type": "webhook", "url": webhook.url, "batch_size": 20}],
    }
    async with http.post(f"{stack.url('gateway')}/v1/jobs/enrich", json=body) as response:
        assert response.status == 202, await response.text()
        traceparent = response.headers["traceparent"]
        job_id = (await response.json())["job_id"]
    _, trace_id, _, _ = traceparent.split("-")
    done = await Api(stack.url("gateway"), http).wait_job(job_id)
    assert done["state"] == "completed", done

    async def all_delivered() -> bool:
        return len(webhook.lead_ids()) == 60

    await wait_until(all_delivered, what="every lead delivered to the webhook")
    # Each delivery continues the job's trace: the receiver could join it.
    assert {b["traceparent"].split("-")[1] for b in webhook.batches} == {trace_id}

    expected = {
        ("leadflow-gateway", "POST /v1/jobs/enrich"),
        ("leadflow-enricher", "task enrich"),
        ("leadflow-enricher", "provider alpha"),
        ("leadflow-router", "record batch"),
        ("leadflow-router", "webhook delivery"),
    }

    async def complete() -> bool:
        seen = {(s.service, s.name) for s in otlp.of_trace(trace_id)}
        deliveries = [s for s in otlp.of_trace(trace_id) if s.name == "webhook delivery"]
        return expected <= seen and len(deliveries) >= len(webhook.batches)

    await wait_until(complete, what=f"the spans of trace {trace_id}")
    spans = otlp.of_trace(trace_id)
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_id]
    assert [(r.service, r.name) for r in roots] == [("leadflow-gateway", "POST /v1/jobs/enrich")]
    # A tree: every other span's parent is a span of the same trace.
    orphans = [(s.service, s.name) for s in spans if s.parent_id and s.parent_id not in ids]
    assert orphans == []
    tasks = [s for s in spans if s.name == "task enrich"]
    assert sum(1 for _ in tasks) >= 60 // 25  # 25 leads per task
    assert all(s.attributes["job_id"] == job_id for s in tasks)
    alpha = [s for s in spans if s.name == "provider alpha"]
    assert sum(int(str(s.attributes["leads"])) for s in alpha) == 60
    assert all(s.attributes["provider"] == "alpha" for s in alpha)

    # The enricher's log lines of this job carry its trace id.
    log_lines = [
        json.loads(line)
        for line in (stack.data_dir / "log" / "enricher.log").read_text().splitlines()
        if line.startswith("{")
    ]
    handled = [e for e in log_lines if e.get("event") == "message.handled"]
    assert handled
    assert {e.get("trace_id") for e in handled if e.get("job_id") == job_id} == {trace_id}


async def test_without_otel_variables_nothing_is_traced_and_no_traceparent_is_invented(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    body = {"leads": make_leads(3, seed=314), "destinations": [{"type": "dashboard"}]}
    async with http.post(f"{stack.url('gateway')}/v1/jobs/enrich", json=body) as response:
        assert response.status == 202
        assert "traceparent" not in response.headers
