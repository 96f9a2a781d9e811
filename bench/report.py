"""Results: what each scenario measured, the table printed at the end, the JSON file.

A scenario returns figures (machine-readable, into the JSON) and rows (what a person
reads in the table). Failures are recorded too, so one broken scenario does not hide
the others' numbers.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import loadavg

RESULTS_DIR = Path("var") / "bench"


@dataclass(frozen=True)
class Row:
    metric: str
    value: str
    compared: str = ""


@dataclass
class Scenario:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0

    def row(self, metric: str, value: str, compared: str = "") -> None:
        self.rows.append(Row(metric, value, compared))


@dataclass
class RunReport:
    config: dict[str, Any]
    results_dir: Path = RESULTS_DIR
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    machine: dict[str, Any] = field(default_factory=dict)
    scenarios: list[Scenario] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.machine = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": loadavg(),
        }

    def figures(self, name: str) -> dict[str, Any] | None:
        return next((s.figures for s in self.scenarios if s.name == name and not s.error), None)

    def write(self) -> Path:
        self.machine["loadavg_at_end"] = loadavg()
        results_dir = self.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        text = json.dumps(asdict(self), indent=2, default=str)
        path = results_dir / f"{stamp}.json"
        path.write_text(text)
        (results_dir / "latest.json").write_text(text)
        return path


def previous_figures(name: str, results_dir: Path = RESULTS_DIR) -> dict[str, Any] | None:
    """A scenario's figures from the newest saved run that has them (for ratios when the
    scenario was not run this time)."""
    for path in sorted(results_dir.glob("2*.json"), reverse=True):
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        for scenario in saved.get("scenarios", []):
            if scenario.get("name") == name and not scenario.get("error"):
                figures: dict[str, Any] = scenario["figures"]
                return {**figures, "from": path.name}
    return None


def render_table(report: RunReport) -> str:
    header = ("scenario", "metric", "value", "compared with")
    lines: list[tuple[str, str, str, str]] = []
    for scenario in report.scenarios:
        if scenario.error:
            lines.append((scenario.name, "FAILED", scenario.error[:70], ""))
            continue
        for i, row in enumerate(scenario.rows):
            lines.append((scenario.name if i == 0 else "", row.metric, row.value, row.compared))
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(header)]
    out = [fmt_line(header, widths), fmt_line(tuple("-" * w for w in widths), widths)]
    out.extend(fmt_line(line, widths) for line in lines)
    for scenario in report.scenarios:
        out.extend(f"  [{scenario.name}] {note}" for note in scenario.notes)
    return "\n".join(out)


def fmt_line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)
