"""Fault-suite fixtures: a broker node of the suite's own and stacks wired to it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack
from tests.broker_node import BrokerNode, NodeUnavailable


@pytest.fixture(scope="session")
def broker_node() -> Iterator[BrokerNode]:
    # Not under pytest's tmp dir: the server runs as the `rabbitmq` user, which cannot
    # enter pytest's private (0700) directories.
    base = Path(tempfile.mkdtemp(prefix="leadflow-rabbitmq-"))
    node = BrokerNode(base)
    try:
        node.start()
    except NodeUnavailable as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"fault tests need a broker node of their own: {e}")
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


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
