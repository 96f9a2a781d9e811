"""`/healthz`, `/readyz` and `/metrics`, served by every service.

`/healthz` answers while the process runs. `/readyz` runs the service's readiness checks
(broker connected and topology declared, store writable...) and answers 503 with the
first failing reason. `/metrics` is the Prometheus text of the service's own registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.service import HttpServer

# A check returns None when ready, or the reason it is not.
ReadinessCheck = Callable[[], Awaitable[str | None]]
# Facts `/readyz` shows beside the status, e.g. the broker node in use ({"node": "host:port"}).
ReadinessDetails = Callable[[], Mapping[str, str | None]]
READINESS_TIMEOUT_S = 2.0


class Metrics:
    """The metrics every service shares, in a registry of its own (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.consumed = Counter(
            "leadflow_messages_consumed_total",
            "Messages taken from a queue, by outcome (ack, retry, dead_letter, requeue).",
            ["queue", "outcome"],
            registry=self.registry,
        )
        self.published = Counter(
            "leadflow_messages_published_total",
            "Messages published and confirmed by the broker.",
            ["routing_key"],
            registry=self.registry,
        )
        self.handle_seconds = Histogram(
            "leadflow_message_handle_seconds",
            "Time from delivery to ack of one message.",
            ["queue"],
            registry=self.registry,
        )
        self.queue_ready = Gauge(
            "leadflow_queue_messages_ready",
            "Messages waiting in a queue this service consumes (its lag), sampled.",
            ["queue"],
            registry=self.registry,
        )


def add_ops_routes(
    app: web.Application,
    checks: Sequence[ReadinessCheck],
    metrics: Metrics,
    details: ReadinessDetails | None = None,
) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reason = await first_failing(checks)
        extra = dict(details()) if details is not None else {}
        if reason is None:
            return web.json_response({"status": "ready", **extra})
        return web.json_response({"status": "not ready", "reason": reason, **extra}, status=503)

    async def metrics_text(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(metrics.registry)
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_text)


async def first_failing(checks: Sequence[ReadinessCheck]) -> str | None:
    for check in checks:
        try:
            reason = await asyncio.wait_for(check(), READINESS_TIMEOUT_S)
        except TimeoutError:
            return f"{getattr(check, '__name__', 'check')} timed out"
        except Exception as e:  # a failing probe means not ready, with its reason
            return f"{type(e).__name__}: {e}"
        if reason is not None:
            return reason
    return None


class OpsServer(HttpServer):
    """The small HTTP server of a worker service (the gateway mounts the routes itself)."""

    def __init__(
        self,
        host: str,
        port: int,
        checks: Sequence[ReadinessCheck],
        metrics: Metrics,
        details: ReadinessDetails | None = None,
    ) -> None:
        app = web.Application()
        add_ops_routes(app, checks, metrics, details)
        super().__init__(app, host, port)
