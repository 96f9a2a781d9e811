"""A rehearsal of `docker compose up` where there is no Docker engine: what compose would run,
run as processes.

- the broker: the installed RabbitMQ (3.10.8, as the image) on a node of its own, booted
  with `deploy/rabbitmq/rabbitmq.conf` and `definitions.json` and the management plugin;
- the image: a directory holding only what the Dockerfile copies, and a Python that sees
  only that directory and the installed dependencies (`-S`: no editable install of this
  checkout), so a package missing from the image fails here as it would in the container;
- each service: its compose `command` and `environment`, hosts and ports mapped to this
  machine (`rabbitmq:5672` to the node, `sandbox:8090` and the HTTP ports to free ports,
  `/data` to one shared directory); ready when its compose healthcheck passes;
- then the demo's path: an enrich job and a scrape job through the gateway, the CSV in the
  shared data volume, `/metrics` everywhere, a graceful stop of every service.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import ROOT, SERVICES
from tests.broker_node import BrokerNode, NodeUnavailable, give_to_rabbitmq_user, node_of_its_own
from tests.compose import (
    BROKER,
    DEFINITIONS,
    RABBITMQ_CONF,
    dockerfile_copies,
    env_of,
    load_compose,
    rabbitmq_conf,
)
from tests.helpers import Api, free_port, wait_until
from tests.pg import create_schema, drop_schema, scaleout_pg_url, unreachable

pytestmark = pytest.mark.e2e

HEALTHY_WITHIN_S = 60.0
STOP_WITHIN_S = 30.0
# scheme://[user:password@]host:port in a compose value
URL_ADDRESS = re.compile(r"(//(?:[^@/\s]*@)?)([\w.-]+):(\d+)")


@dataclass
class ComposeBroker(BrokerNode):
    """A node configured as the compose file configures the rabbitmq container."""

    management_port: int = 0

    def start(self) -> None:
        if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
            raise NodeUnavailable("rabbitmq-server is not installed here")
        self.name = f"lfcompose-{os.getpid()}@localhost"
        self.port, self.dist_port, self.management_port = free_port(), free_port(), free_port()
        for sub in ("mnesia", "log"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        definitions = self.base_dir / "definitions.json"
        shutil.copy(DEFINITIONS, definitions)
        conf = RABBITMQ_CONF.read_text().replace(
            rabbitmq_conf()["load_definitions"], str(definitions)
        )
        (self.base_dir / "rabbitmq.conf").write_text(
            f"{conf}\nlisteners.tcp.default = 127.0.0.1:{self.port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
        )
        # The image `rabbitmq:3.10-management` runs with this plugin on.
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        give_to_rabbitmq_user(self.base_dir)
        subprocess.run(
            ["rabbitmq-server", "-detached"], env=self._env(), check=True, capture_output=True
        )
        self.wait_started()


@dataclass
class Rehearsal:
    """The compose services as processes, from an image-like directory."""

    app_dir: Path
    data_dir: Path
    log_dir: Path
    broker: ComposeBroker
    compose: dict[str, Any]
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The compose `postgres` service as this machine has it: a schema of the rehearsal's
    # own, or None (no PostgreSQL here: the services fall back to SQLite in /data).
    store_url: str | None = None

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in SERVICES}
        # (host, port) as the containers see them -> as this machine has them
        self.addresses = {(BROKER, "5672"): f"127.0.0.1:{self.broker.port}"}
        for name in SERVICES:
            port = env_of(self.compose["services"][name])["LEADFLOW_HTTP_PORT"]
            self.addresses[(name, port)] = f"127.0.0.1:{self.ports[name]}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def translate(self, value: str, service: str) -> str:
        """A compose value as this machine needs it: hosts and ports of the services."""

        def address(match: re.Match[str]) -> str:
            # 127.0.0.1 inside a container is that container (its healthcheck).
            host = service if match.group(2) == "127.0.0.1" else match.group(2)
            mapped = self.addresses.get((host, match.group(3)))
            return match.group(1) + mapped if mapped else match.group(0)

        return URL_ADDRESS.sub(address, value)

    def env(self, service: str) -> dict[str, str]:
        env = {
            key: self.translate(value, service)
            for key, value in env_of(self.compose["services"][service]).items()
        }
        env["LEADFLOW_HTTP_PORT"] = str(self.ports[service])
        if env.pop("LEADFLOW_STORE_URL", None) is not None and self.store_url is not None:
            env["LEADFLOW_STORE_URL"] = self.store_url
        mounted = dict(v.split(":")[:2] for v in self.compose["services"][service]["volumes"])
        assert env["LEADFLOW_DATA_DIR"] == mounted["leadflow-data"]
        env["LEADFLOW_DATA_DIR"] = str(self.data_dir)
        # The image's Python: its site-packages, the code in the working directory only.
        return {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(site_packages()), **env}

    def argv(self, command: list[str], service: str) -> list[str]:
        assert command[0] == "python", command
        return [sys.executable, "-S", *(self.translate(arg, service) for arg in command[1:])]

    def start(self, name: str) -> None:
        service = self.compose["services"][name]
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self.argv(service["command"], name),
                cwd=self.app_dir,
                env=self.env(name),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def healthy(self, name: str) -> str | None:
        """The service's compose healthcheck, run as Docker would run it in the container:
        None when it passes, else what it printed."""
        test = self.compose["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        proc = self.procs[name]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
        check = subprocess.run(
            self.argv(test[1:], name),
            cwd=self.app_dir,
            env=self.env(name),
            capture_output=True,
            timeout=10,
            check=False,
        )
        if check.returncode == 0:
            return None
        return (check.stdout + check.stderr).decode(errors="replace") or "(no output)"

    def wait_healthy(self, name: str) -> None:
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while (failure := self.healthy(name)) is not None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name} not healthy; its healthcheck said:\n{failure}\n"
                    f"its log:\n{self.log(name)}"
                )
            time.sleep(0.2)  # polling the healthcheck, as Docker does, not synchronisation

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service, as `docker compose stop`; their exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes[name] = None
        return codes

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:])


def site_packages() -> list[str]:
    return [path for path in site.getsitepackages() if Path(path).is_dir()]


def build_image_dir(app_dir: Path) -> None:
    """What `COPY` puts in /app: only those paths of the checkout."""
    for source in dockerfile_copies():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, app_dir / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, app_dir / source)


@pytest.fixture(scope="module")
def broker() -> Iterator[ComposeBroker]:
    with node_of_its_own(
        ComposeBroker, "leadflow-compose-", "the rehearsal needs a RabbitMQ node of its own"
    ) as node:
        yield node


@pytest.fixture(scope="module")
def rehearsal(
    broker: ComposeBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rehearsal]:
    root = tmp_path_factory.mktemp("compose")
    for sub in ("app", "data", "log"):
        (root / sub).mkdir()
    build_image_dir(root / "app")
    running = Rehearsal(root / "app", root / "data", root / "log", broker, load_compose())
    pg_url = scaleout_pg_url()
    schema = None
    if unreachable(pg_url) is None:
        schema, running.store_url = create_schema(pg_url)
    try:
        for name in SERVICES:
            running.start(name)
        for name in SERVICES:
            running.wait_healthy(name)
        yield running
    finally:
        running.stop()
        if schema is not None:
            drop_schema(pg_url, schema)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def test_definitions_give_the_management_ui_its_admin(
    broker: ComposeBroker, http: aiohttp.ClientSession
) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    base = f"http://127.0.0.1:{broker.management_port}/api"
    async with http.get(f"{base}/whoami", headers=auth) as response:
        assert response.status == 200
        assert "administrator" in (await response.json())["tags"]
    async with http.get(f"{base}/vhosts", headers=auth) as response:
        assert {vhost["name"] for vhost in await response.json()} == {"/"}


async def test_the_demo_works_against_the_compose_services(
    rehearsal: Rehearsal, http: aiohttp.ClientSession
) -> None:
    api = Api(rehearsal.url("gateway"), http)
    leads = make_leads(30, seed=5)
    job = await api.submit({"leads": leads, "destinations": [{"type": "csv", "name": "demo"}]})
    status = await api.wait_job(job["job_id"], timeout_s=60)
    assert status["state"] == "completed"
    assert status["progress"]["done"] == len(leads)
    csv_path = rehearsal.data_dir / "exports" / "default" / "demo.csv"

    async def exported() -> bool:
        return csv_path.exists() and len(csv_path.read_text().splitlines()) == 1 + len(leads)

    # The router appends the job's last rows after it committed them (and the completion).
    await wait_until(exported, timeout_s=30, what="every lead in the CSV")


async def test_the_scraper_reaches_the_sandbox_source(
    rehearsal: Rehearsal, http: aiohttp.ClientSession
) -> None:
    api = Api(rehearsal.url("gateway"), http)
    job = await api.submit_scrape(
        {
            "source": "sandbox",
            "query": {"keywords": "vp engineering", "geo": "London"},
            "max_pages": 2,
            "max_leads": 50,
        }
    )
    status = await api.wait_job(job["job_id"], timeout_s=60)
    assert status["state"] == "completed", status
    assert status["progress"]["total"] > 0


async def test_every_service_serves_metrics_and_the_topology_is_declared(
    rehearsal: Rehearsal, http: aiohttp.ClientSession
) -> None:
    for name in SERVICES:
        async with http.get(f"{rehearsal.url(name)}/metrics") as response:
            assert response.status == 200, name
    queues = await asyncio.to_thread(rehearsal.broker.queues, "leadflow")
    assert {"leadflow.router.events", "leadflow.control"} <= set(queues)

    async def router_consuming() -> bool:
        queues = await asyncio.to_thread(rehearsal.broker.queues, "leadflow")
        return queues["leadflow.router.events"]["consumers"] >= 1

    await wait_until(router_consuming, timeout_s=10, what="a consumer on the events queue")


def test_every_service_stops_gracefully(rehearsal: Rehearsal) -> None:
    """Last in this module: `docker compose stop` sends SIGTERM; exit 0 within the grace."""
    assert rehearsal.stop() == dict.fromkeys(SERVICES, 0)
