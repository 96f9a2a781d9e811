"""`devtools/ensure-rabbitmq.sh --management`: enables the management UI when it can, says
so when it cannot, and never fails `make run` / `make up` because of it.

The broker is a listening socket of the test's own and `rabbitmq-plugins` a fake that
records its arguments, so no real broker is touched.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.stack import ROOT

SCRIPT = ROOT / "devtools" / "ensure-rabbitmq.sh"
TOOLS = ("dirname", "seq", "sleep", "timeout", "grep", "tail", "cat")
FAKE_PLUGINS = """#!{bash}
echo "$*" >> {log}
case "$*" in
  *is_enabled*) exit {is_enabled_rc} ;;
  *enable*) echo "{enable_output}"; exit {enable_rc} ;;
esac
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    plugin_calls: list[str]


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def broker() -> Iterator[socket.socket]:
    with listening_socket() as sock:
        yield sock


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """Only the tools the script needs: the machine's real rabbitmq-plugins stays out."""
    path = tmp_path / "bin"
    path.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (path / tool).symlink_to(found)
    return path


def fake_plugins(
    bin_dir: Path, *, enabled: bool, enable_rc: int = 0, enable_output: str = ""
) -> None:
    script = bin_dir / "rabbitmq-plugins"
    script.write_text(
        FAKE_PLUGINS.format(
            bash=shutil.which("bash"),
            log=bin_dir / "plugins.log",
            is_enabled_rc=0 if enabled else 69,
            enable_rc=enable_rc,
            enable_output=enable_output,
        )
    )
    script.chmod(0o755)


def run(
    bin_dir: Path,
    broker: socket.socket,
    *args: str,
    management_port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Run:
    env = {
        "PATH": str(bin_dir),
        "RABBITMQ_NODE_PORT": str(broker.getsockname()[1]),
        "RABBITMQ_MANAGEMENT_PORT": str(management_port or closed_port()),
        **(extra_env or {}),
    }
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )
    log = bin_dir / "plugins.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return Run(result.returncode, result.stdout, result.stderr, calls)


def test_without_the_flag_the_plugins_are_left_alone(bin_dir: Path, broker: socket.socket) -> None:
    fake_plugins(bin_dir, enabled=False)
    result = run(bin_dir, broker)
    assert result.returncode == 0
    assert "RabbitMQ is up" in result.stdout
    assert result.plugin_calls == []


def test_a_disabled_plugin_is_enabled(bin_dir: Path, broker: socket.socket) -> None:
    fake_plugins(bin_dir, enabled=False)
    result = run(bin_dir, broker, "--management")
    assert result.returncode == 0, result.stderr
    assert result.plugin_calls == [
        "-q is_enabled rabbitmq_management",
        "-q enable rabbitmq_management",
    ]


def test_an_enabled_plugin_is_not_enabled_again(bin_dir: Path, broker: socket.socket) -> None:
    fake_plugins(bin_dir, enabled=True)
    result = run(bin_dir, broker, "--management")
    assert result.returncode == 0
    assert result.plugin_calls == ["-q is_enabled rabbitmq_management"]


def test_an_answering_ui_is_shown_with_its_url(bin_dir: Path, broker: socket.socket) -> None:
    fake_plugins(bin_dir, enabled=False)
    with listening_socket() as ui:
        port = ui.getsockname()[1]
        result = run(bin_dir, broker, "--management", management_port=port)
    assert result.returncode == 0
    assert f"management UI on http://127.0.0.1:{port} (guest/guest in dev)" in result.stdout
    assert result.plugin_calls == []


def test_no_rights_is_a_warning_not_a_failure(bin_dir: Path, broker: socket.socket) -> None:
    fake_plugins(
        bin_dir, enabled=False, enable_rc=75, enable_output="Error: eacces (permission denied)"
    )
    result = run(bin_dir, broker, "--management")
    assert result.returncode == 0
    assert "could not enable the management UI" in result.stderr
    assert "eacces (permission denied)" in result.stderr


def test_no_rabbitmq_plugins_is_said_and_passed(bin_dir: Path, broker: socket.socket) -> None:
    result = run(bin_dir, broker, "--management")
    assert result.returncode == 0
    assert "rabbitmq-plugins is not installed" in result.stdout


def test_a_remote_broker_is_not_touched(bin_dir: Path, broker: socket.socket) -> None:
    fake_plugins(bin_dir, enabled=False)
    result = run(
        bin_dir,
        broker,
        "--management",
        extra_env={"LEADFLOW_AMQP_URL": "amqp://u:p@broker.example:5672/"},
    )
    assert result.returncode == 0
    assert result.plugin_calls == []


def test_an_unknown_flag_is_refused(bin_dir: Path, broker: socket.socket) -> None:
    assert run(bin_dir, broker, "--managment").returncode == 2
