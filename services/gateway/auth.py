"""API-key auth: `Authorization: Bearer <key>` names the tenant a request acts for.

Keys are compared by their SHA-256, so the lookup does not leak key prefixes through
timing. With auth off (dev, no keys configured) every request is the `default` tenant.
"""

from __future__ import annotations

from aiohttp import web

from services.gateway.config import DEV_TENANT, key_digest
from services.gateway.keys import SETTINGS, TENANT
from services.gateway.problems import Handler, Problem

PUBLIC_PREFIXES = ("/healthz", "/readyz", "/metrics", "/openapi.json")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    settings = request.app[SETTINGS]
    if not settings.auth_enabled:
        request[TENANT] = DEV_TENANT
        return await handler(request)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    tenant = settings.api_keys.get(key_digest(key.strip())) if scheme.lower() == "bearer" else None
    if tenant is None:
        raise Problem(
            401,
            "send `Authorization: Bearer <api key>` with a key from LEADFLOW_API_KEYS",
            headers={"WWW-Authenticate": 'Bearer realm="leadflow"'},
        )
    request[TENANT] = tenant
    return await handler(request)
