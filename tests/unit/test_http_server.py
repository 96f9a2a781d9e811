"""One service runtime: the gateway, the sandbox and every worker's ops routes are served by
the same `HttpServer` (shared/service.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from services.gateway import app as gateway_app
from services.gateway.config import load_settings as load_gateway
from services.sandbox import app as sandbox_app
from services.sandbox.config import load_settings as load_sandbox
from shared.config import EnvReader
from shared.health import Metrics, OpsServer
from shared.service import HttpServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_start_serves_the_app_and_stop_runs_its_cleanup() -> None:
    events: list[str] = []

    async def resource(_: web.Application) -> AsyncIterator[None]:
        events.append("opened")
        yield
        events.append("closed")

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    app.cleanup_ctx.append(resource)
    server = HttpServer(app, "127.0.0.1", free_port())
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/") as response,
        ):
            assert await response.text() == "hello"
        assert events == ["opened"]
    finally:
        await server.stop()
    assert events == ["opened", "closed"]


async def test_the_ops_server_is_an_http_server_with_the_ops_routes() -> None:
    async def not_yet() -> str | None:
        return "warming up"

    server = OpsServer("127.0.0.1", free_port(), [not_yet], Metrics())
    assert isinstance(server, HttpServer)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["reason"] == "warming up"
    finally:
        await server.stop()


def test_gateway_and_sandbox_are_served_on_their_configured_address() -> None:
    env = EnvReader({"LEADFLOW_HTTP_HOST": "127.0.0.2", "LEADFLOW_HTTP_PORT": "18123"})
    for server in (
        gateway_app.serve(load_gateway(env)),
        sandbox_app.serve(load_sandbox(env)),
    ):
        assert isinstance(server, HttpServer)
        assert (server.host, server.port) == ("127.0.0.2", 18123)


async def test_the_sandbox_process_server_answers_and_stops() -> None:
    port = free_port()
    env = EnvReader({"LEADFLOW_HTTP_PORT": str(port)})
    server = sandbox_app.serve(load_sandbox(env))
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/_sandbox/stats") as response,
        ):
            assert response.status == 200
    finally:
        await server.stop()
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz"):
                raise AssertionError("still listening after stop")
        except aiohttp.ClientConnectionError:
            pass
