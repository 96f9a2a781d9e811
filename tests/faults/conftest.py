"""Fault-suite fixtures: a broker node of the suite's own and stacks wired to it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import NamedTuple

import aiohttp
import pytest

from devtools.stack import Stack
from tests.broker_node import BrokerNode, node_of_its_own
from tests.helpers import Api


@pytest.fixture(scope="session")
def broker_node() -> Iterator[BrokerNode]:
    with node_of_its_own(
        BrokerNode, "leadflow-rabbitmq-", "fault tests need a broker node of their own"
    ) as node:
        yield node


@pytest.fixture
def fault_stack(
    stack_factory: Callable[..., Stack], broker_node: BrokerNode
) -> Callable[..., Stack]:
    """A stack on the suite's own broker node, with the given extra settings."""

    def make(env: dict[str, str] | None = None) -> Stack:
        return stack_factory(
            {
                "LEADFLOW_AMQP_URL": broker_node.amqp_url,
                "LEADFLOW_WEBHOOK_BACKOFF_BASE_S": "0.2",
                "LEADFLOW_WEBHOOK_BACKOFF_MAX_S": "1",
                **(env or {}),
            }
        )

    return make


class Started(NamedTuple):
    stack: Stack
    api: Api


StartStack = Callable[..., Awaitable[Started]]


@pytest.fixture
def start_stack(fault_stack: Callable[..., Stack], http: aiohttp.ClientSession) -> StartStack:
    """Make a stack on the suite's broker node with `env`, start `services` (all when none
    are named) and return it with a client of its gateway: every fault test's first lines."""

    async def start(env: dict[str, str] | None = None, *services: str) -> Started:
        stack = fault_stack(env)
        await asyncio.to_thread(stack.start, *services)
        return Started(stack, Api(stack.url("gateway"), http))

    return start
