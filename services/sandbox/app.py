"""The sandbox service: stands in for the paid external APIs in local runs and tests.

It serves the fake enrichment providers, emulations of the paid vendors' APIs
(`/vendors/<vendor>/...`, see `vendors.py`) and the fake lead source, and `/_sandbox/*`: the
current knobs (`GET`/`PUT config`, a partial update), what was asked of it (`GET stats`)
and `POST reset` between runs.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from services.sandbox.config import Knobs, SandboxSettings
from services.sandbox.faults import Faults
from services.sandbox.providers import FakeProviders, Stats
from services.sandbox.sources import FakeSources, SourceStats
from services.sandbox.vendors import FakeVendors
from shared.health import Metrics, add_ops_routes
from shared.logging import get_logger
from shared.service import HttpServer

log = get_logger(__name__)


def create_app(settings: SandboxSettings) -> web.Application:
    faults = Faults(msgspec.structs.replace(settings.knobs), settings.seed)
    vendors = FakeVendors(faults)
    # The http providers' matches are billed beside the vendors' (`credits` in the stats).
    providers = FakeProviders(faults, lambda name: vendors.stats.charge(name, "match"))
    sources = FakeSources(faults)

    async def get_config(_: web.Request) -> web.Response:
        return web.json_response(msgspec.to_builtins(faults.knobs))

    async def put_config(request: web.Request) -> web.Response:
        try:
            patch: dict[str, Any] = msgspec.json.decode(await request.read(), type=dict[str, Any])
            faults.knobs = msgspec.convert({**msgspec.to_builtins(faults.knobs), **patch}, Knobs)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise web.HTTPUnprocessableEntity(text=str(e)) from None
        log.info("sandbox.knobs_changed", **patch)
        return web.json_response(msgspec.to_builtins(faults.knobs))

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                **providers.stats.as_json(),
                **vendors.stats.as_json(),
                "hangs": faults.hangs,
                "faults": {str(status): n for status, n in faults.answered.items()},
                "rate_limited": dict(faults.rate_limited),
                "sources": sources.stats.requests,
            }
        )

    async def reset(_: web.Request) -> web.Response:
        providers.stats = Stats()
        sources.stats = SourceStats()
        vendors.reset()
        faults.reset(msgspec.structs.replace(settings.knobs))
        return web.json_response({"status": "reset"})

    app = web.Application(client_max_size=8 * 1024**2)
    app.add_routes(providers.routes())
    app.add_routes(sources.routes())
    app.add_routes(vendors.routes())
    app.add_routes(
        [
            web.get("/_sandbox/config", get_config),
            web.put("/_sandbox/config", put_config),
            web.get("/_sandbox/stats", get_stats),
            web.post("/_sandbox/reset", reset),
        ]
    )
    add_ops_routes(app, [], Metrics())
    return app


def serve(settings: SandboxSettings) -> HttpServer:
    """The sandbox as its process runs it: the app on its configured host and port."""
    return HttpServer.of(create_app(settings), settings.common)
