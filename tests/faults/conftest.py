"""Fault-suite fixtures: a broker node of the suite's own and stacks wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import aiohttp
import pytest

from devtools.stack import Stack
from tests.broker_node import BrokerNode, node_of_its_own
from tests.helpers import StartStack, start


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


@pytest.fixture
def start_stack(fault_stack: Callable[..., Stack], http: aiohttp.ClientSession) -> StartStack:
    """As everywhere (tests/conftest.py), but on the suite's own broker node."""
    return partial(start, fault_stack, http)
