"""`deploy/`: the compose file, the Dockerfile, the broker definitions, Prometheus and Grafana
wiring, checked against the code they deploy (`devtools.stack`, `shared.topology`, imports).

No Docker engine is needed: the files are parsed and cross-checked. Where the tools exist,
`docker compose config` and `promtool check config` also validate them.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from devtools.stack import ROOT, SERVICES
from shared.config import DEFAULT_PORTS
from shared.topology import Topology
from tests.compose import (
    BROKER,
    COMPOSE_FILE,
    DEFINITIONS,
    DEPLOY,
    DOCKERFILE,
    dockerfile_copies,
    env_of,
    load_compose,
    mounts,
    published_ports,
    rabbitmq_conf,
)

PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DATA_VOLUME = "leadflow-data"
OBSERVABILITY = ("prometheus", "grafana")

# The compose-spec keys this project may use: a typo ("healtcheck") is otherwise ignored
# by a YAML parser and only noticed by `docker compose`, which CI may not have.
SERVICE_KEYS = {
    "build", "command", "depends_on", "environment", "healthcheck", "hostname", "image",
    "ports", "profiles", "restart", "stop_grace_period", "volumes",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Entry points run in the image: the services, their healthcheck, the demo, the CLI.
IMAGE_ENTRY_MODULES = (
    *(f"services.{name}.__main__" for name in SERVICES),
    "devtools.probe",
    "devtools.demo",
    "leadflow_cli.main",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def seconds(duration: str) -> float:
    """A compose duration such as `30s`, `1m30s`, `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration != "", f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


# -- the compose file ---------------------------------------------------------------------


def test_compose_runs_every_service_and_the_broker(services: dict[str, dict[str, Any]]) -> None:
    assert set(SERVICES) | {BROKER} <= set(services)


def test_compose_uses_only_known_keys(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unknown keys {set(service) - SERVICE_KEYS}"
        assert set(service.get("healthcheck", {})) <= HEALTHCHECK_KEYS, name
        depends = service.get("depends_on", {})
        if isinstance(depends, dict):
            for dependency, spec in depends.items():
                assert dependency in services, f"{name} depends on unknown {dependency}"
                assert spec["condition"] in DEPENDS_CONDITIONS, name


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_module_from_the_image(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    build = service["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("name", SERVICES)
def test_service_listens_on_its_default_port_on_every_interface(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service, port = services[name], DEFAULT_PORTS[name]
    env = env_of(service)
    assert env["LEADFLOW_HTTP_HOST"] == "0.0.0.0"
    assert int(env["LEADFLOW_HTTP_PORT"]) == port
    assert published_ports(service) == [("127.0.0.1", port, port)]


@pytest.mark.parametrize("name", SERVICES)
def test_service_healthcheck_is_its_own_readyz(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    check = services[name]["healthcheck"]
    port = env_of(services[name])["LEADFLOW_HTTP_PORT"]
    assert check["test"] == [
        "CMD", "python", "-m", "devtools.probe", f"http://127.0.0.1:{port}/readyz"
    ]  # fmt: skip
    assert not check.get("disable", False)


@pytest.mark.parametrize("name", SERVICES)
def test_service_waits_for_a_healthy_broker_and_reaches_it(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    assert service["depends_on"][BROKER]["condition"] == "service_healthy"
    env = env_of(service)
    broker = urlsplit(env["LEADFLOW_AMQP_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("amqp", BROKER, 5672)
    assert 5672 in {container for _, _, container in published_ports(services[BROKER])}
    sandbox = urlsplit(env["LEADFLOW_SANDBOX_URL"])
    assert (sandbox.hostname, sandbox.port) == ("sandbox", DEFAULT_PORTS["sandbox"])


@pytest.mark.parametrize("name", SERVICES)
def test_service_shares_the_data_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    data_dir = env_of(service)["LEADFLOW_DATA_DIR"]
    assert f"{DATA_VOLUME}:{data_dir}" in service["volumes"]
    assert DATA_VOLUME in compose["volumes"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_gets_time_for_a_graceful_stop(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    grace_s = float(env_of(service)["LEADFLOW_SHUTDOWN_GRACE_S"])
    assert seconds(service["stop_grace_period"]) > grace_s


def test_host_ports_are_distinct_and_local(services: dict[str, dict[str, Any]]) -> None:
    mappings = [m for service in services.values() for m in published_ports(service)]
    host_ports = [port for _, port, _ in mappings]
    assert len(host_ports) == len(set(host_ports)), sorted(host_ports)
    assert {ip for ip, _, _ in mappings} == {"127.0.0.1"}


def test_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"


def test_observability_stays_out_of_a_plain_up(services: dict[str, dict[str, Any]]) -> None:
    for name in OBSERVABILITY:
        assert services[name]["profiles"] == ["observability"]
    for name in (*SERVICES, BROKER):
        assert "profiles" not in services[name]


# -- the broker ---------------------------------------------------------------------------


def test_broker_has_the_management_ui_and_loads_the_definitions(
    services: dict[str, dict[str, Any]],
) -> None:
    broker = services[BROKER]
    assert broker["image"] == "rabbitmq:3.10-management"
    assert 15672 in {container for _, _, container in published_ports(broker)}
    assert "healthcheck" in broker
    mounted = mounts(broker)
    assert mounted["./rabbitmq/rabbitmq.conf"] == "/etc/rabbitmq/rabbitmq.conf"
    conf = rabbitmq_conf()
    assert mounted["./rabbitmq/definitions.json"] == conf["load_definitions"]
    # The services connect from other containers; guest is loopback-only by default.
    assert conf["loopback_users"] == "none"


def test_definitions_grant_the_services_user_its_vhost(
    services: dict[str, dict[str, Any]],
) -> None:
    definitions = json.loads(DEFINITIONS.read_text())
    broker = urlsplit(env_of(services["gateway"])["LEADFLOW_AMQP_URL"])
    vhost = broker.path.removeprefix("/") or "/"
    assert vhost in {v["name"] for v in definitions["vhosts"]}
    users = {u["name"]: u for u in definitions["users"]}
    user = users[broker.username]
    assert user["password"] == broker.password
    assert "administrator" in user["tags"]  # the management UI
    assert {"user": broker.username, "vhost": vhost, **dict.fromkeys(
        ("configure", "write", "read"), ".*"
    )} in definitions["permissions"]  # fmt: skip


def test_definitions_declare_no_queue_the_services_would_refuse() -> None:
    """A pre-declared queue whose arguments differ from `shared.topology` would make the
    services' own declaration fail with PRECONDITION_FAILED."""
    topology = Topology("leadflow")
    for queue in json.loads(DEFINITIONS.read_text()).get("queues", []):
        assert queue["arguments"] == topology.spec_of(queue["name"]).arguments, queue["name"]


# -- the image ----------------------------------------------------------------------------


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Absolute imports of one file (this codebase uses no relative imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def local_packages_reached(entry_modules: tuple[str, ...]) -> set[str]:
    """Top-level packages of this repository that the entry modules import, transitively."""
    seen: set[str] = set()
    todo = list(entry_modules)
    while todo:
        module = todo.pop()
        path = module_file(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(imported_modules(path))
    return {module.split(".")[0] for module in seen}


def test_import_walk_finds_local_packages() -> None:
    assert local_packages_reached(("devtools.probe",)) == {"devtools"}
    assert {"shared", "services"} <= local_packages_reached(("services.router.__main__",))


def test_image_holds_every_package_the_services_import() -> None:
    copied = set(dockerfile_copies())
    needed = local_packages_reached(IMAGE_ENTRY_MODULES)
    assert needed >= {"shared", "services", "devtools", "leadflow_cli"}
    assert needed <= copied, f"COPY missing for {needed - copied}"
    # The demo reads the sample leads; pip needs pyproject.toml and the README it names.
    assert {"samples", "pyproject.toml", "README.md"} <= copied


def test_build_context_sends_what_the_dockerfile_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else stays out (.venv, var/, caches)
    for source in dockerfile_copies():
        assert f"!{source}" in ignore, f"{source} is copied but excluded from the context"


def test_image_runs_as_a_user_that_owns_the_data_dir() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER (?!root)\S+", text, re.MULTILINE)
    assert "chown leadflow /data" in text


# -- Prometheus and Grafana ---------------------------------------------------------------


def test_prometheus_scrapes_every_service(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        target: group.get("labels", {}).get("service")
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for group in job["static_configs"]
        for target in group["targets"]
    }
    for name in SERVICES:
        port = env_of(services[name])["LEADFLOW_HTTP_PORT"]
        assert targets.get(f"{name}:{port}") == name, f"{name} is not scraped"


def test_grafana_provisioning_points_at_compose_paths(
    services: dict[str, dict[str, Any]],
) -> None:
    provisioning = GRAFANA / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    url = urlsplit(datasource["datasources"][0]["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    assert "prometheus" in services
    provider = yaml.safe_load((provisioning / "dashboards" / "leadflow.yml").read_text())
    mounted = mounts(services["grafana"])
    dashboard_in_container = Path(mounted["./grafana/leadflow-dashboard.json"])
    assert dashboard_in_container.parent == Path(provider["providers"][0]["options"]["path"])
    assert mounted["./grafana/provisioning"] == "/etc/grafana/provisioning"


# -- the real tools, where this machine has them ------------------------------------------


def has_docker_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(not has_docker_compose(), reason="the docker compose plugin is not installed")
def test_docker_compose_accepts_the_file() -> None:
    for profile in ([], ["--profile", "observability"]):
        result = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_scrape_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
