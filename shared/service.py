"""Run a service process: settings, logging, signals, graceful stop.

`run_service` is what every `__main__` calls. A settings error exits at once with one
line naming the variable. SIGTERM or SIGINT stops the service gracefully: it stops taking
work, finishes what is in flight within the grace period, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

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
    asyncio.run(_serve(build(settings)))


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
