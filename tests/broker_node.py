"""A RabbitMQ node of the test's own, on its own port, that a test may stop and start;
and a cluster of three such nodes.

Fault tests restart the broker and kill connections; doing that to the machine's shared
broker would break everyone else's work, so they get a node of their own (started with
the installed `rabbitmq-server`, its data in a temporary directory). A cluster's nodes
differ in name, ports and data directory and share the machine's Erlang cookie.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
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

    @property
    def address(self) -> str:
        """`host:port`, as a service's `/readyz` names the node it is on."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Boot the node (again with the same name, ports and data after `shutdown`)."""
        self.boot()
        self.wait_started()

    def boot(self) -> None:
        """Launch the node and return at once (it runs once `wait_started` returns)."""
        if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
            raise NodeUnavailable("rabbitmq-server is not installed here")
        if not self.name:
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

    def stop(self) -> None:
        if self.name:
            self.ctl("stop", check=False)

    def shutdown(self) -> None:
        """Stop the whole node (its Erlang VM), as a machine going down would; `start`
        brings it back with its data."""
        self.ctl("stop")

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


@dataclass
class BrokerCluster:
    """Three nodes of the test's own joined in one cluster (the first is the seed)."""

    base_dir: Path
    size: int = 3
    nodes: list[BrokerNode] = field(default_factory=list)
    down: set[str] = field(default_factory=set)

    @property
    def amqp_url(self) -> str:
        """Every node's URL, comma-separated, as `LEADFLOW_AMQP_URL` takes a cluster."""
        return ",".join(node.amqp_url for node in self.nodes)

    def start(self) -> None:
        self.nodes = [BrokerNode(self.base_dir / f"node{i + 1}") for i in range(self.size)]
        give_to_rabbitmq_user(self.base_dir)  # the nodes' directories are inside it
        for node in self.nodes:  # boot together: each boot takes seconds
            node.boot()
        for node in self.nodes:
            node.wait_started()
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", seed.name)
            node.start_app()
        running = self.running_nodes()
        if len(running) != self.size:
            raise NodeUnavailable(f"cluster formed with {running} only")

    def stop(self) -> None:
        # All at once: stopped one by one, the last nodes wait out their lost peers (a
        # minority pauses), which took over a minute and a half.
        running = [n for n in self.nodes if n.name not in self.down]  # a stopped node times out
        with ThreadPoolExecutor(max_workers=max(len(running), 1)) as pool:
            list(pool.map(BrokerNode.stop, running))

    def running_nodes(self) -> list[str]:
        status = json.loads(self.any_running().ctl("cluster_status", "--formatter", "json"))
        return sorted(status.get("running_nodes", []))

    def shutdown(self, node: BrokerNode) -> None:
        """Stop a node's whole VM, as a machine going down would."""
        self.down.add(node.name)
        node.shutdown()

    def restart(self, node: BrokerNode) -> None:
        """Bring a stopped node back, with its name, ports and data: it rejoins."""
        node.start()
        self.down.discard(node.name)

    def any_running(self) -> BrokerNode:
        """A node that is up (to list queues while another one is down)."""
        for node in self.nodes:
            if node.name not in self.down:
                return node
        raise NodeUnavailable("no node of the cluster is running")

    def queues(self, prefix: str) -> dict[str, dict[str, int]]:
        return self.any_running().queues(prefix)


@contextmanager
def cluster_of_its_own(prefix: str, need: str) -> Iterator[BrokerCluster]:
    """A started three-node cluster, stopped and removed afterwards; the test is skipped
    only where `rabbitmq-server` is not installed (any other failure is an error)."""
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        pytest.skip(f"{need}: rabbitmq-server is not installed here")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = BrokerCluster(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
