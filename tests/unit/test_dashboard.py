"""The dashboard's static files: served at `/` and `/static/<name>` with a strict CSP, nothing
else from that folder, and the page references only files that are served."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.dashboard import ASSETS, STATIC_DIR
from services.gateway.operations import add_routes
from services.gateway.problems import problem_middleware


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[problem_middleware])
    add_routes(app, only={"dashboard", "dashboardAsset"})
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_page_is_served_with_a_strict_policy(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.get("/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        page = await response.text()
    referenced = set(re.findall(r'(?:src|href)="/static/([^"]+)"', page))
    assert referenced == set(ASSETS)
    assert "<script>" not in page, "inline scripts would be blocked by the policy"


@pytest.mark.parametrize(("name", "content_type"), sorted(ASSETS.items()))
async def test_assets_are_served_with_their_type(
    client: TestClient[web.Request, web.Application], name: str, content_type: str
) -> None:
    async with client.get(f"/static/{name}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == content_type
        assert await response.read() == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize("name", ["index.html", "nope.js", "..%2Fdashboard.py"])
async def test_only_listed_assets_are_served(
    client: TestClient[web.Request, web.Application], name: str
) -> None:
    async with client.get(f"/static/{name}") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
