"""The gateway answers store trouble with 503 and Retry-After, never 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.problems import STORE_RETRY_AFTER_S, problem_middleware
from shared.errors import StoreUnavailable


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def locked(_: web.Request) -> web.Response:
        raise StoreUnavailable("store unavailable: database is locked")

    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/locked", locked)
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_store_trouble_is_503_with_retry_after(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/locked")
    assert response.status == 503
    assert response.headers["Retry-After"] == str(STORE_RETRY_AFTER_S)
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 503
    assert "retry" in body["detail"]
    assert "locked" not in body["detail"], "internals stay in the logs"

    # A bug is still a 500.
    assert (await client.get("/broken")).status == 500
