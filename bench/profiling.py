"""Profile the end-to-end run: py-spy attached to the gateway, enricher and router.

py-spy samples each process from outside (no code change, no restart) at `rate` Hz
while the same workload as `e2e` runs; on SIGINT it writes the collapsed stacks, which
`bench.stacks` turns into per-service hotspots. Sampling pauses the target briefly, so
this run's own leads/s is a little lower than e2e's and is not the throughput figure.

Output in var/bench/profiles/<timestamp>/: `<service>.txt` (collapsed stacks: open in
speedscope, or flamegraph.pl), `summary.md` (the tables), and the summary in the JSON.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.harness import PROFILED, leadflow_stack, service_pids
from bench.report import RunReport, Scenario, rate
from bench.stacks import markdown, read_profile
from bench.workload import run_workload

ATTACH_TIMEOUT_S = 15.0
FLUSH_TIMEOUT_S = 30.0
ATTACH_POLL_S = 0.05


@dataclass
class Recorder:
    name: str
    output: Path
    log: Path
    proc: asyncio.subprocess.Process
    started: float = 0.0
    stopped: float = 0.0


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return found


async def attach(name: str, pid: int, out_dir: Path, rate_hz: int) -> Recorder:
    output, log = out_dir / f"{name}.txt", out_dir / f"{name}.py-spy.log"
    with log.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            py_spy(), "record", "--pid", str(pid), "--rate", str(rate_hz),
            "--format", "raw", "--full-filenames", "--output", str(output),
            stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    recorder = Recorder(name, output, log, proc)
    await wait_sampling(recorder)
    return recorder


async def wait_sampling(recorder: Recorder) -> None:
    """py-spy says "Sampling process ..." once attached; fail if it exits or never does."""
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while b"Sampling process" not in recorder.log.read_bytes():
        if recorder.proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"py-spy did not attach to {recorder.name}: {tail(recorder.log)}")
        await asyncio.sleep(ATTACH_POLL_S)
    recorder.started = time.monotonic()


async def detach(recorder: Recorder) -> None:
    """SIGINT makes py-spy write its output and exit."""
    recorder.stopped = time.monotonic()
    if recorder.proc.returncode is None:
        recorder.proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(recorder.proc.wait(), FLUSH_TIMEOUT_S)
    except TimeoutError:
        recorder.proc.kill()
        await recorder.proc.wait()


def tail(path: Path, chars: int = 400) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no output)"


async def profile_run(config: BenchConfig, out_dir: Path) -> tuple[Any, list[Recorder]]:
    env = {"LEADFLOW_MAX_LEADS_PER_JOB": str(max(config.leads, config.job_chunk))}
    recorders: list[Recorder] = []
    async with leadflow_stack(env) as stack:
        try:
            for name, pid in service_pids(stack, PROFILED).items():
                recorders.append(await attach(name, pid, out_dir, config.profile_rate_hz))
            result = await run_workload(
                stack, config.leads, chunk=config.leads, timeout_s=config.timeout_s(config.leads)
            )
        finally:
            for recorder in recorders:
                await detach(recorder)
    return result, recorders


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    out_dir = config.results_dir / "profiles" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    result, recorders = await profile_run(config, out_dir)
    scenario = Scenario("profile")
    summaries: dict[str, Any] = {}
    for recorder in recorders:
        if not recorder.output.exists():
            raise RuntimeError(f"py-spy wrote no profile for {recorder.name}: {tail(recorder.log)}")
        duration_s = recorder.stopped - recorder.started
        summaries[recorder.name] = summary = read_profile(recorder.output).summary(
            config.profile_rate_hz, duration_s
        )
        cpu_share = result.cpu_s.get(recorder.name, 0.0) / result.total_s
        summary["cpu_share_proc"] = round(cpu_share, 2)
        scenario.row(
            f"{recorder.name}: CPU {cpu_share:.0%}, not idle {summary['not_idle_share']:.0%}",
            ", ".join(f"{pct}% {pkg}" for pkg, pct in summary["self_by_package"][:3]),
            "top: "
            + ", ".join(
                f"{pct}% {where.split(' (')[0]}" for where, pct in summary["self_by_function"][:3]
            ),
        )
    (out_dir / "summary.md").write_text(
        "\n".join(markdown(name, summary) for name, summary in summaries.items())
    )
    scenario.figures = {
        "dir": str(out_dir),
        "rate_hz": config.profile_rate_hz,
        "leads_per_s_while_profiled": round(result.leads_per_s, 1),
        "cpu_ms_per_lead": result.figures()["cpu_ms_per_lead"],
        "services": summaries,
    }
    scenario.row("while profiled", rate(result.leads_per_s, "leads/s"), f"profiles in {out_dir}")
    scenario.row(
        "CPU ms per lead (/proc)",
        ", ".join(f"{name} {ms:.2f}" for name, ms in result.figures()["cpu_ms_per_lead"].items()),
    )
    scenario.notes.append(
        "CPU = /proc CPU time over the run (share of one core); not idle = py-spy samples "
        "over rate x duration, which also counts waiting for a core and blocking calls such "
        "as fsync (the router's COMMIT): the gap is time the process wanted a core or a disk"
    )
    return scenario
