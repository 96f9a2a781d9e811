"""The gateway service: the public HTTP API in front of the broker and the status store."""

from __future__ import annotations

from aiohttp import web

from services.gateway.auth import auth_middleware, setup_auth
from services.gateway.config import GatewaySettings
from services.gateway.events import setup_events
from services.gateway.keys import BROKER, GUARD, METRICS, SETTINGS, STORE, SUBMITTER
from services.gateway.openapi import add_api
from services.gateway.problems import problem_middleware
from services.gateway.submit import JobSubmitter
from services.gateway.traces import trace_middleware
from shared.broker import Broker
from shared.health import Metrics, add_ops_routes
from shared.logging import get_logger
from shared.messages import Codec
from shared.netguard import NetGuard
from shared.service import HttpServer
from shared.store import Store

log = get_logger(__name__)


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(
        middlewares=[trace_middleware, problem_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    metrics = Metrics()
    store = Store(settings.common.db_path)
    broker = Broker(settings.common, Codec(), metrics)
    app[SETTINGS] = settings
    app[STORE] = store
    app[BROKER] = broker
    app[GUARD] = NetGuard(settings.webhook_allow_nets)
    app[METRICS] = metrics
    app[SUBMITTER] = JobSubmitter(
        store, broker, settings.publish_timeout_s, settings.daily_quota_leads
    )

    async def store_ready() -> str | None:
        await store.check_writable("gateway")
        return None

    add_ops_routes(app, [broker.readiness, store_ready], metrics, broker.ready_details)
    add_api(app)  # every route, from the operation table (operations.py)
    setup_auth(app)
    setup_events(app)
    app.cleanup_ctx.append(_resources)
    return app


async def _resources(app: web.Application):  # type: ignore[no-untyped-def]
    if not app[SETTINGS].auth_enabled:
        log.warning("auth.disabled", reason="LEADFLOW_ENV=dev and no LEADFLOW_API_KEYS")
    await app[STORE].open()
    app[BROKER].start()
    yield
    await app[BROKER].close()
    await app[STORE].close()


def serve(settings: GatewaySettings) -> HttpServer:
    """The gateway as its process runs it: the app on its configured host and port."""
    return HttpServer.of(create_app(settings), settings.common)
