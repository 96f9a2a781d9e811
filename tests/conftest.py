"""Fixtures: a broker prefix of its own per stack, real service processes, an API client."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from hypothesis import settings

from devtools.stack import SERVICES, Stack
from tests.helpers import (
    AMQP_URL,
    Api,
    StartStack,
    WebhookReceiver,
    delete_topology,
    free_port,
    start,
)
from tests.pg import create_schema, drop_schema, suite_pg_url

# On PostgreSQL (`make test-pg`) each stack gets a schema of its own: stack -> schema.
_SCHEMAS: dict[int, str] = {}

# Property tests judge answers, not speed: no per-example deadline, which a loaded machine
# (CI, parallel runs) would turn into failures.
settings.register_profile("leadflow", deadline=None)
settings.load_profile("leadflow")


def make_stack(data_dir: Path, env: dict[str, str] | None = None) -> Stack:
    prefix = f"lftest-{secrets.token_hex(4)}"
    ports = {name: free_port() for name in (*SERVICES, "scraper")}
    base_env = {
        "LEADFLOW_BROKER_PREFIX": prefix,
        "LEADFLOW_LOG_FORMAT": "json",
        "LEADFLOW_SHUTDOWN_GRACE_S": "5",
        "LEADFLOW_RETRY_BASE_S": "0.2",
        **(env or {}),
    }
    pg_url = suite_pg_url()
    schema = None
    if pg_url is not None and "LEADFLOW_STORE_URL" not in (env or {}):
        schema, base_env["LEADFLOW_STORE_URL"] = create_schema(pg_url)
    made = Stack(data_dir, env=base_env, ports=ports)
    if schema is not None:
        _SCHEMAS[id(made)] = schema
    return made


def teardown_stack(stack: Stack) -> None:
    for service in stack.services.values():
        service.stop(timeout_s=10)
    url = stack.env.get("LEADFLOW_AMQP_URL", AMQP_URL).split(",")[0]  # a cluster: its first node
    keys = stack.env.get("LEADFLOW_API_KEYS", "")
    tenants = tuple(pair.split(":", 1)[0] for pair in keys.split(",") if ":" in pair)
    asyncio.run(delete_topology(stack.env["LEADFLOW_BROKER_PREFIX"], url, tenants))
    pg_url = suite_pg_url()
    schema = _SCHEMAS.pop(id(stack), None)
    if pg_url is not None and schema is not None:
        drop_schema(pg_url, schema)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """All services with dev defaults, shared by the tests of one module."""
    running = make_stack(tmp_path_factory.mktemp("stack"))
    try:
        running.start()
        yield running
    finally:
        teardown_stack(running)


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Make a stack with its own settings; everything it starts is stopped and cleaned up."""
    made: list[Stack] = []

    def factory(env: dict[str, str] | None = None) -> Stack:
        new = make_stack(tmp_path / f"stack{len(made)}", env)
        made.append(new)
        return new

    yield factory
    for each in made:
        teardown_stack(each)


@pytest.fixture
def start_stack(stack_factory: Callable[..., Stack], http: aiohttp.ClientSession) -> StartStack:
    """`await start_stack(env, *services)`: a started stack of its own and its gateway client."""
    return partial(start, stack_factory, http)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def api(stack: Stack, http: aiohttp.ClientSession) -> Api:
    return Api(stack.url("gateway"), http)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
