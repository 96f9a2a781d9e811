"""A RabbitMQ node of the test's own, on its own port, that a test may stop and start.

Fault tests restart the broker and kill connections; doing that to the machine's shared
broker would break everyone else's work, so they get a node of their own (started with
the installed `rabbitmq-server`, its data in a temporary directory).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.helpers import free_port


class NodeUnavailable(RuntimeError):
    pass


@dataclass
class BrokerNode:
    base_dir: Path
    name: str = ""
    port: int = 0
    dist_port: int = 0

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
        }

    def start(self) -> None:
        if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
            raise NodeUnavailable("rabbitmq-server is not installed here")
        self.name = f"lftest-{secrets.token_hex(3)}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        for sub in ("mnesia", "log"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nconsumer_timeout = 1800000\n"
        )
        give_to_rabbitmq_user(self.base_dir)
        subprocess.run(
            ["rabbitmq-server", "-detached"], env=self._env(), check=True, capture_output=True
        )
        self.wait_started()

    def stop(self) -> None:
        if self.name:
            self.ctl("stop", check=False)

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_started()

    def ctl(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise NodeUnavailable(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def queues(self, prefix: str) -> dict[str, dict[str, int]]:
        """Ready, unacked and consumer counts of the queues under `prefix`."""
        out = self.ctl(
            "list_queues",
            "-q",
            "--formatter",
            "json",
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
        )
        return {
            q["name"]: {
                k: int(q[k]) for k in ("messages_ready", "messages_unacknowledged", "consumers")
            }
            for q in json.loads(out or "[]")
            if q["name"].startswith(prefix + ".")
        }

    def wait_started(self, timeout_s: float = 90) -> None:
        """Until the node's app runs (a detached start returns before the node is up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = subprocess.run(
                ["rabbitmqctl", "-n", self.name, "await_startup", "--timeout", "5"],
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if result.returncode == 0:
                return
            time.sleep(0.5)
        log = self.base_dir / "log"
        raise NodeUnavailable(f"node {self.name} did not start within {timeout_s}s; logs in {log}")


def give_to_rabbitmq_user(path: Path) -> None:
    """The server drops to the `rabbitmq` user when started as root: let it write there."""
    try:
        user = pwd.getpwnam("rabbitmq")
    except KeyError:
        return
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)
        os.chown(path, user.pw_uid, user.pw_gid)


N = TypeVar("N", bound=BrokerNode)


@contextmanager
def node_of_its_own(make: Callable[[Path], N], prefix: str, need: str) -> Iterator[N]:
    """A started node, stopped and removed afterwards; the test is skipped if none can run.

    Its files are not under pytest's tmp dir: the server runs as the `rabbitmq` user,
    which cannot enter pytest's private (0700) directories."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    node = make(base)
    try:
        node.start()
    except NodeUnavailable as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"{need}: {e}")
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
