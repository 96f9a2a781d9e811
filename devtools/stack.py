"""Start and stop leadflow's services as real processes: for `make up/down`, the demo, tests.

python -m devtools.stack up     # every service in the background, pids and logs in var/
python -m devtools.stack down   # SIGTERM them (graceful), SIGKILL after the grace period
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.probe import http_ok
from shared.config import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("sandbox", "enricher", "scraper", "router", "gateway")


class StartError(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # Whose `services` package runs: another checkout's (the CPU bench's baseline revision).
    code_root: Path = ROOT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=self.code_root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise StartError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if http_ok(f"{self.url}/readyz"):
                return
            time.sleep(0.1)
        raise StartError(f"{self.name} not ready after {timeout_s:g}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait for a graceful exit, SIGKILL if it does not come; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class Stack:
    """A set of services sharing a data dir, a broker prefix and one environment."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    # The checkout whose services run (`python -m services.X` there): this one by default.
    code_root: Path = ROOT

    def __post_init__(self) -> None:
        base = {**os.environ, "LEADFLOW_ENV": "dev", "LEADFLOW_DATA_DIR": str(self.data_dir)}
        base.setdefault("LEADFLOW_SANDBOX_URL", f"http://127.0.0.1:{self.ports['sandbox']}")
        if self.code_root != ROOT:
            # Ahead of the venv's editable install of this checkout, whatever the cwd.
            base["PYTHONPATH"] = str(self.code_root)
        base.update(self.env)
        self.env = base

    def process(self, name: str, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        env = {**self.env, "LEADFLOW_HTTP_PORT": str(self.ports[name]), **(extra_env or {})}
        log_path = self.data_dir / "log" / f"{name}.log"
        return ServiceProcess(name, self.ports[name], env, log_path, code_root=self.code_root)

    def start(self, *names: str, extra_env: dict[str, str] | None = None) -> None:
        for name in names or SERVICES:
            self.services[name] = service = self.process(name, extra_env)
            service.start()
        for name in names or SERVICES:
            self.services[name].wait_ready()

    def stop(self, *names: str) -> None:
        for name in names or tuple(reversed(list(self.services))):
            service = self.services.get(name)
            if service is not None:
                service.stop()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def pid_file(data_dir: Path, name: str) -> Path:
    return data_dir / "run" / f"{name}.pid"


def up(data_dir: Path) -> None:
    stack = Stack(data_dir)
    for name in SERVICES:
        pid_path = pid_file(data_dir, name)
        if pid_path.exists() and process_alive(int(pid_path.read_text())):
            print(f"{name}: already running (pid {pid_path.read_text().strip()})")
            continue
        stack.start(name)
        service = stack.services[name]
        assert service.proc is not None
        pid_path.parent.mkdir(parents=True, exist_ok=True)
        pid_path.write_text(str(service.proc.pid))
        print(f"{name}: up on {service.url} (log {service.log_path})")


def down(data_dir: Path, timeout_s: float = 30.0) -> None:
    for name in reversed(SERVICES):
        pid_path = pid_file(data_dir, name)
        if not pid_path.exists():
            continue
        pid = int(pid_path.read_text())
        if process_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        pid_path.unlink()
        print(f"{name}: stopped")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    data_dir = Path(os.environ.get("LEADFLOW_DATA_DIR", ROOT / "var")).resolve()
    if command == "up":
        up(data_dir)
    elif command == "down":
        down(data_dir)
    else:
        sys.exit("usage: python -m devtools.stack up|down")


if __name__ == "__main__":
    main()
