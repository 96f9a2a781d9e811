"""Alert posts are guarded like webhooks: no redirects followed, IP literals checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from services.router.alerts import Alert, Alerter
from shared.netguard import GuardedResolver, NetGuard

ALERT = Alert(job_id="job-1", tenant="acme", kind="failed", text="leadflow: job job-1 failed")


class Receiver:
    """`/hook` answers 307 to `/inside` (standing for the private network); both count."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.redirect)
        app.router.add_post("/inside", self.inside)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = cast(Any, site._server).sockets[0].getsockname()[1]

    async def redirect(self, request: web.Request) -> web.Response:
        self.hits.append("hook")
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{self.port}/inside")

    async def inside(self, request: web.Request) -> web.Response:
        self.hits.append("inside")
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    yield running
    assert running.runner is not None
    await running.runner.cleanup()


def alerter(guard: NetGuard, session: aiohttp.ClientSession, url: str) -> Alerter:
    return Alerter(cast(Any, None), session, url, guard)  # sending does not use the store


async def test_an_alert_does_not_follow_a_redirect(receiver: Receiver) -> None:
    guard = NetGuard(("127.0.0.0/8",))
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard))
    async with aiohttp.ClientSession(connector=connector) as session:
        sent = await alerter(guard, session, f"http://127.0.0.1:{receiver.port}/hook").send(ALERT)
    assert receiver.hits == ["hook"]
    assert not sent  # a 307 is not a delivered alert: tried again next round


async def test_an_alert_to_a_refused_ip_literal_is_not_posted(receiver: Receiver) -> None:
    guard = NetGuard(())  # loopback not allowed
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"http://127.0.0.1:{receiver.port}/inside"
        sent = await alerter(guard, session, url).send(ALERT)
    assert not sent
    assert receiver.hits == []
