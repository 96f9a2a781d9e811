"""The dashboard: a static page at `/` (HTML, one JS module, CSS) over the public API.

The page itself is public and holds no data; every call it makes goes through `/v1/…` with
the `Authorization` header built from the key the user types in. Only the files listed
here are served, with a Content-Security-Policy that allows nothing but this origin.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.gateway.problems import Problem

STATIC_DIR = Path(__file__).with_name("static")
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "schedules.js": "text/javascript; charset=utf-8",
    "deadletters.js": "text/javascript; charset=utf-8",
    "throughput.js": "text/javascript; charset=utf-8",
    "newjob.js": "text/javascript; charset=utf-8",
    "credits.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with each release: revalidate instead of guessing an age.
    "Cache-Control": "no-cache",
}


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC_DIR / "index.html",
        headers={**SECURITY_HEADERS, "Content-Type": "text/html; charset=utf-8"},
    )


async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise Problem(404, f"no asset {name!r}")
    return web.FileResponse(
        STATIC_DIR / name, headers={**SECURITY_HEADERS, "Content-Type": content_type}
    )
