"""Request spans: each changing request (POST, PUT, DELETE) is a span, and the root of the
trace of any job it creates; the answer carries its W3C `traceparent`.

A client that sends a `traceparent` gets its own trace continued. Reads (GET) are not
traced: dashboards and SSE clients poll them, and a job's trace would drown in them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry.trace import SpanKind

from shared import tracing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TRACED_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in TRACED_METHODS:
        return await handler(request)
    route = request.match_info.route.resource
    name = f"{request.method} {route.canonical if route is not None else request.path}"
    with tracing.span(name, parent=request.headers, kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("url.path", request.path)
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            tracing.fail(span, f"HTTP {response.status}")
        traceparent = tracing.carrier().get(tracing.TRACEPARENT)
        if traceparent and not response.prepared:
            response.headers[tracing.TRACEPARENT] = traceparent
        return response
