"""One trace per job, with OpenTelemetry: off unless the standard `OTEL_*` variables ask.

A job's trace starts at the gateway's POST (the answer carries its W3C `traceparent`), is
stored with the job, and travels with every message: `carrier()` is merged into each
message's AMQP headers when it is published, and a consumer continues the trace of the
message it handles (`span(..., parent=headers)`). The webhook dispatcher, which works from
the store rather than from a message, continues the job's stored `traceparent`, and sends
its own span's on the POST.

Exporting: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, spans go
to that OTLP/HTTP receiver through the SDK's batch processor, configured by the other
standard variables (`OTEL_SERVICE_NAME`, `OTEL_BSP_SCHEDULE_DELAY`, headers...);
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off. Otherwise the API's
no-op tracer runs: spans cost a function call, and no `traceparent` is invented.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

TRACEPARENT = "traceparent"
_TRACER_NAME = "leadflow"
_provider: Any = None  # the SDK's TracerProvider, once set up (for the flush at exit)


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service: str) -> None:
    """Export this process's spans when the environment asks for it (once per process)."""
    global _provider
    if _provider is not None or not enabled():
        return
    # Imported here: a process that does not trace never loads the SDK and its exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"leadflow-{service}"
    _provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)


def shutdown() -> None:
    """Flush what is buffered (a stopping service must not lose its last spans)."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME)


def carrier() -> dict[str, str]:
    """The current trace context as headers (`traceparent`, `tracestate`); empty when no
    span is recording, so untraced runs add nothing to messages."""
    headers: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)
    return headers


def context_of(headers: Mapping[str, Any] | None) -> context.Context | None:
    """The trace context that `headers` carry (AMQP or HTTP), or None."""
    if not headers:
        return None
    text = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in headers.items()}
    if TRACEPARENT not in text:
        return None
    return propagate.extract(text)


def stored(traceparent: str | None) -> dict[str, str] | None:
    """A `traceparent` kept in the store (a job's), as headers `span(parent=...)` takes."""
    return {TRACEPARENT: traceparent} if traceparent else None


@contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, Any] | None = None,
    links: Sequence[Mapping[str, Any] | None] = (),
    kind: SpanKind = SpanKind.INTERNAL,
    **attributes: Any,
) -> Iterator[Span]:
    """A span, current for the block: a child of `parent`'s context when headers carrying
    one are given, else of the current span. An exception marks it failed and goes on."""
    linked = [
        Link(trace.get_current_span(ctx).get_span_context())
        for ctx in (context_of(h) for h in links)
        if ctx is not None
    ]
    with tracer().start_as_current_span(
        name,
        context=context_of(parent),
        kind=kind,
        links=linked,
        attributes={k: v for k, v in attributes.items() if v is not None},
        record_exception=True,
        set_status_on_exception=True,
    ) as current:
        yield current


def fail(current: Span, reason: str) -> None:
    current.set_status(Status(StatusCode.ERROR, reason))


def ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span, for log lines (empty when none)."""
    context_ = trace.get_current_span().get_span_context()
    if not context_.is_valid:
        return {}
    return {"trace_id": f"{context_.trace_id:032x}", "span_id": f"{context_.span_id:016x}"}
