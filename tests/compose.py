"""Reading `deploy/`: the compose file's services and environment, the Dockerfile's COPYs.

Shared by the static checks (`tests/unit/test_deploy.py`) and the rehearsal that runs the
compose services as processes (`tests/e2e/test_compose_rehearsal.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devtools.stack import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"
BROKER = "rabbitmq"


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each `ip:host:container` port mapping."""
    mappings = []
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        assert len(parts) == 3, f"{spec!r}: publish as 127.0.0.1:HOST:CONTAINER"
        mappings.append((parts[0], int(parts[1]), int(parts[2])))
    return mappings


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Volume source -> path in the container."""
    return dict(volume.split(":")[:2] for volume in service.get("volumes", []))


def rabbitmq_conf() -> dict[str, str]:
    return dict(
        line.split(" = ", 1)
        for line in RABBITMQ_CONF.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )


def dockerfile_copies() -> list[str]:
    """The build-context paths the Dockerfile's COPY instructions take."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources.extend(w.rstrip("/") for w in words[1:-1] if not w.startswith("--"))
    return sources
