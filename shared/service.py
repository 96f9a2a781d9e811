"""Run a service process: settings, logging, signals, graceful stop, its HTTP server.

`run_service` is what every `__main__` calls. A settings error exits at once with one
line naming the variable. SIGTERM or SIGINT stops the service gracefully: it stops taking
work, finishes what is in flight within the grace period, and the process exits 0.

`HttpServer` is the one way a service serves HTTP: the gateway's API, the sandbox, and the
ops routes of every worker (shared/health.py `OpsServer`).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

from aiohttp import web

from shared import tracing
from shared.config import CommonSettings, EnvReader
from shared.errors import ConfigError
from shared.logging import configure_logging, get_logger

S = TypeVar("S")
log = get_logger(__name__)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def run_service(
    name: str,
    load_settings: Callable[[EnvReader], S],
    common: Callable[[S], CommonSettings],
    build: Callable[[S], Service],
) -> None:
    try:
        settings = load_settings(EnvReader())
    except ConfigError as e:
        sys.exit(f"leadflow {name}: invalid configuration: {e}")
    configure_logging(common(settings))
    tracing.setup(name)
    try:
        asyncio.run(_serve(build(settings)))
    finally:
        tracing.shutdown()


async def _serve(service: Service) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await service.start()
    log.info("service.started")
    await stopping.wait()
    log.info("service.stopping")
    await service.stop()
    log.info("service.stopped")


class HttpServer:
    """An aiohttp application served on `host:port`; a `Service` of its own.

    `start` binds the port (an error there, e.g. the port in use, fails the start);
    `stop` stops listening, lets requests in flight finish within aiohttp's shutdown
    timeout, and runs the application's cleanup (its `cleanup_ctx` resources).
    """

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        # No access log: every request would be a line; services log what matters.
        self._runner = web.AppRunner(app, access_log=None)

    @classmethod
    def of(cls, app: web.Application, common: CommonSettings) -> HttpServer:
        """The service's own server, on its configured `LEADFLOW_HTTP_HOST`/`_PORT`."""
        return cls(app, common.http_host, common.http_port)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("http.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
