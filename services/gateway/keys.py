"""Typed keys for what the gateway keeps on its aiohttp application and requests."""

from __future__ import annotations

from aiohttp import web

from services.gateway.config import GatewaySettings
from services.gateway.submit import JobSubmitter
from shared.broker import Broker
from shared.health import Metrics
from shared.netguard import NetGuard
from shared.store import Store

SETTINGS = web.AppKey("settings", GatewaySettings)
STORE = web.AppKey("store", Store)
BROKER = web.AppKey("broker", Broker)
GUARD = web.AppKey("guard", NetGuard)
METRICS = web.AppKey("metrics", Metrics)
SUBMITTER = web.AppKey("submitter", JobSubmitter)

TENANT = web.RequestKey("tenant", str)


def tenant_of(request: web.Request) -> str:
    return request[TENANT]
