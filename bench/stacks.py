"""Where the time goes, from py-spy's collapsed stacks (`--format raw`).

Each line of a raw profile is `frame;frame;...;leaf count`, a frame `function (file:line)`.
py-spy leaves idle threads out by default, so every sample is a moment the process was
running Python (C code is charged to the Python frame that called it: an SQLite
`execute` shows as the line that calls it). From that:

- self time by function and by line: where the CPU actually is;
- inclusive time of leadflow's own functions: which of our code paths cost the most;
- self time by package (aio_pika, asyncio, sqlite via our store, structlog...): which
  layer to look at.

Percentages are of the non-idle samples. `not_idle_share` is those samples over
rate x duration: the share of time the process was running, waiting for a core (on a
loaded machine) or in a blocking call py-spy does not see as idle (fsync). Set beside the
CPU time from /proc, the gap is time spent waiting for a core.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.stack import ROOT

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")
SITE = re.compile(r"/site-packages/(?P<pkg>[^/]+)/")
STDLIB = re.compile(r"/lib/python3\.\d+/")
OURS = ("services/", "shared/", "bench/", "devtools/")
# Leaves where a thread sits blocked in C although py-spy counted it as running: the
# event loop's epoll wait and the store thread's wait for work. Counted apart as idle.
IDLE_LEAVES = (
    ("Selector.select", "stdlib/selectors.py"),
    ("_worker", "stdlib/concurrent/futures/thread.py"),
    ("Condition.wait", "stdlib/threading.py"),
    ("Thread._wait_for_tstate_lock", "stdlib/threading.py"),
)
TOP = 12


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: str

    @property
    def where(self) -> str:
        return f"{self.func} ({self.file})"

    @property
    def at_line(self) -> str:
        return f"{self.func} ({self.file}:{self.line})"

    @property
    def ours(self) -> bool:
        return self.file.startswith(OURS)

    @property
    def idle(self) -> bool:
        return any(self.func.endswith(f) and self.file == p for f, p in IDLE_LEAVES)


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text)
    if match is None:
        return Frame(text, "?", "0")
    return Frame(match["func"], short_path(match["file"]), match["line"])


def short_path(path: str) -> str:
    """`aiohttp/client.py`, `stdlib/asyncio/events.py`, `services/router/ledger.py`."""
    site = SITE.search(path)
    if site:
        return path[site.start() + len("/site-packages/") :]
    stdlib = STDLIB.search(path)
    if stdlib:
        return "stdlib/" + path[stdlib.end() :]
    return path.removeprefix(f"{ROOT}/")


def package_of(frame: Frame) -> str:
    """The layer a frame belongs to: a leadflow module, a library, a stdlib module."""
    file = frame.file
    if frame.ours:
        return file.removesuffix(".py").replace("/", ".")
    if file.startswith("stdlib/"):
        return "stdlib " + file.split("/")[1].removesuffix(".py")
    if file.startswith("<frozen"):
        return "stdlib importlib"
    return file.split("/")[0].removesuffix(".py")


@dataclass
class Profile:
    samples: int = 0
    idle: int = 0
    self_func: Counter[str] = field(default_factory=Counter)
    self_line: Counter[str] = field(default_factory=Counter)
    self_package: Counter[str] = field(default_factory=Counter)
    inclusive_ours: Counter[str] = field(default_factory=Counter)

    def add(self, frames: list[Frame], count: int) -> None:
        leaf = frames[-1]
        if leaf.idle:
            self.idle += count
            return
        self.samples += count
        self.self_func[leaf.where] += count
        self.self_line[leaf.at_line] += count
        self.self_package[package_of(leaf)] += count
        for where in {f.where for f in frames if f.ours}:
            self.inclusive_ours[where] += count

    def share(self, counter: Counter[str], top: int = TOP) -> list[tuple[str, float]]:
        total = max(self.samples, 1)
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    def summary(self, rate_hz: int, duration_s: float) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "idle_samples_excluded": self.idle,
            "not_idle_share": round(self.samples / (rate_hz * duration_s), 2)
            if duration_s
            else None,
            "self_by_function": self.share(self.self_func),
            "self_by_line": self.share(self.self_line),
            "self_by_package": self.share(self.self_package),
            "inclusive_leadflow": self.share(self.inclusive_ours, 20),
        }


def read_profile(path: Path) -> Profile:
    profile = Profile()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        profile.add([parse_frame(part) for part in stack.split(";")], int(count))
    return profile


def markdown(name: str, summary: dict[str, Any]) -> str:
    out = [
        f"## {name}",
        "",
        f"samples: {summary['samples']}, not idle: {summary['not_idle_share']}",
        "",
    ]
    for key, title in (
        ("self_by_package", "Self time by package / module"),
        ("self_by_function", "Self time by function"),
        ("self_by_line", "Self time by line"),
        ("inclusive_leadflow", "Inclusive time, leadflow functions"),
    ):
        out += [f"### {title}", "", "| % CPU | where |", "|---:|---|"]
        out += [f"| {pct} | `{where}` |" for where, pct in summary[key]]
        out.append("")
    return "\n".join(out)
