"""What the kernel says about a process: peak and current RSS, CPU seconds, by pid.

Linux `/proc` only. `RssSampler` polls VmRSS while a workload runs; VmHWM (the kernel's
own high-water mark) is read at the end, so a peak between two samples is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL_S = 0.25
TCP_LISTEN = "0A"


def status_kb(pid: int, key: str) -> int | None:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM...), or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the process so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces; fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Child processes, recursively (prefork pools, for instance)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.extend([int(child), *descendants(int(child))])
    return found


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and its live descendants."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(cpu_seconds(child) or 0.0 for child in descendants(pid))


def listener_pid(port: int) -> int | None:
    """The process listening on TCP `port` (several brokers may run here: tests start
    their own; the one on the AMQP port is the one the benchmark talks to)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(f":{port:04X}") and fields[3] == TCP_LISTEN:
                    inodes.add(f"socket:[{fields[9]}]")
    return next((pid for pid in _pids() if inodes & _sockets(pid)), None) if inodes else None


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _sockets(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                found.add(os.readlink(fd))
    return found


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


@dataclass
class CpuMeter:
    """CPU seconds each process spent between `start()` and `stop()`; for the names in
    `with_children`, its descendants' too (a prefork pool's workers)."""

    pids: dict[str, int]
    with_children: tuple[str, ...] = ()
    _start: dict[str, float] = field(default_factory=dict)
    used_s: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = {name: self._read(name) or 0.0 for name in self.pids}

    def stop(self) -> dict[str, float]:
        for name in self.pids:
            now = self._read(name)
            if now is not None:
                self.used_s[name] = round(now - self._start.get(name, 0.0), 2)
        return self.used_s

    def _read(self, name: str) -> float | None:
        pid = self.pids[name]
        return tree_cpu_seconds(pid) if name in self.with_children else cpu_seconds(pid)


@dataclass
class RssSampler:
    """Peak VmRSS (sampled) and VmHWM (kernel) of each process, in MiB."""

    pids: dict[str, int]
    peak_kb: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._take_sample()
        self._task = asyncio.create_task(self._sample(), name="rss-sampler")

    async def stop(self) -> dict[str, dict[str, float]]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._take_sample()
        result = {}
        for name, pid in self.pids.items():
            hwm = status_kb(pid, "VmHWM")
            result[name] = {
                "peak_rss_mib": round(self.peak_kb.get(name, 0) / 1024, 1),
                "vmhwm_mib": round((hwm or 0) / 1024, 1),
            }
        return result

    async def _sample(self) -> None:
        while True:
            self._take_sample()
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def _take_sample(self) -> None:
        for name, pid in self.pids.items():
            rss = status_kb(pid, "VmRSS")
            if rss is not None:
                self.peak_kb[name] = max(self.peak_kb.get(name, 0), rss)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; always reaped."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def stop_async_process(proc: asyncio.subprocess.Process, timeout_s: float = 10.0) -> None:
    """The asyncio counterpart of `stop_process`."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
