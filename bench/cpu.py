"""CPU per lead, before and after: the e2e job on a baseline revision's services and on
this checkout's, in one bench run (issue 15: the summed CPU per lead of gateway, enricher,
router and broker at most half the baseline's).

The baseline (`--cpu-baseline`, default 975af16: main before issue 15) is checked out
with `git worktree add --detach` into a temporary folder, removed afterwards. Its
services run from that tree (`python -m services.X` there, same venv) but are started,
fed and measured by this checkout's harness, so the two sides differ only in the
services' code: same environment, same leads, zero-latency sandbox, CSV destination,
each revision's own default LEADFLOW_TASK_BATCH_SIZE (printed). The pair runs
`--cpu-repeats` times, alternating, and each service's lowest CPU per lead counts on each
side (the run least disturbed by the rest of the machine, the same rule for both).
CPU is user + system time from /proc; the broker's Erlang VM is shared with whatever
else uses it, so its share is the noisiest.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.config import BenchConfig
from bench.harness import leadflow_stack
from bench.report import RunReport, Scenario, rate
from bench.workload import WorkloadRun, run_workload
from devtools.stack import ROOT, Stack

# The sum: what a lead costs in leadflow's own processes and the broker.
SUMMED = ("gateway", "enricher", "router", "rabbitmq")
TARGET_RATIO = 0.5
# Asked of the revision's own code: how it cuts the job into tasks is that revision's business
# (before shared/tasks.task_size, every task had LEADFLOW_TASK_BATCH_SIZE leads).
LEADS_PER_TASK_PROBE = (
    "import sys\n"
    "from services.gateway.config import load_settings\n"
    "from shared.config import EnvReader\n"
    "size = load_settings(EnvReader()).task_batch_size\n"
    "try:\n"
    "    from shared.tasks import task_size\n"
    "except ImportError:\n"
    "    pass\n"
    "else:\n"
    "    size = task_size(int(sys.argv[1]), size)\n"
    "print(size)\n"
)


def git(*args: str) -> str:
    found = shutil.which("git")
    if found is None:
        raise RuntimeError("the cpu scenario checks its baseline out with git: not found")
    done = subprocess.run(
        [found, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def current_revision() -> str:
    """This checkout's commit, and whether its services differ from it (uncommitted)."""
    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "services", "shared")
    return f"{commit} + uncommitted changes" if dirty else commit


@asynccontextmanager
async def baseline_tree(rev: str) -> AsyncIterator[tuple[Path, str]]:
    """A detached worktree of `rev` (its path and short commit), removed on the way out."""
    commit = await asyncio.to_thread(git, "rev-parse", "--short", "--verify", f"{rev}^{{commit}}")
    folder = Path(tempfile.mkdtemp(prefix="lf-cpu-baseline-"))
    tree = folder / "tree"
    try:
        await asyncio.to_thread(git, "worktree", "add", "--detach", str(tree), commit)
        yield tree, commit
    finally:
        if tree.exists():
            await asyncio.to_thread(git, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(folder, ignore_errors=True)
        await asyncio.to_thread(git, "worktree", "prune")


def leads_per_task(stack: Stack, leads: int) -> str:
    """How many leads a task of a `leads` job carries in `stack`, by its own code."""
    done = subprocess.run(
        [sys.executable, "-c", LEADS_PER_TASK_PROBE, str(leads)],
        cwd=stack.code_root,
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


async def one_run(config: BenchConfig, code_root: Path) -> tuple[WorkloadRun, str]:
    env = {"LEADFLOW_MAX_LEADS_PER_JOB": str(max(config.leads, config.job_chunk))}
    async with leadflow_stack(env, code_root=code_root) as stack:
        batch = await asyncio.to_thread(leads_per_task, stack, config.leads)
        result = await run_workload(
            stack, config.leads, chunk=config.leads, timeout_s=config.timeout_s(config.leads)
        )
    return result, batch


def lowest_per_lead(runs: list[WorkloadRun]) -> dict[str, float]:
    per_run = [run.figures()["cpu_ms_per_lead"] for run in runs]
    names = [name for name in per_run[0] if all(name in figures for figures in per_run)]
    return {name: min(figures[name] for figures in per_run) for name in names}


def summed(per_lead: dict[str, float]) -> float:
    return round(sum(per_lead.get(name, 0.0) for name in SUMMED), 3)


def ratio3(after: float, before: float) -> float | None:
    return round(after / before, 3) if before else None


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    before: list[WorkloadRun] = []
    after: list[WorkloadRun] = []
    batch: dict[str, str] = {}
    async with baseline_tree(config.cpu_baseline) as (tree, baseline_commit):
        for _ in range(max(1, config.cpu_repeats)):
            result, batch["baseline"] = await one_run(config, tree)
            before.append(result)
            result, batch["current"] = await one_run(config, ROOT)
            after.append(result)
    return describe(config, baseline_commit, current_revision(), batch, before, after)


def describe(
    config: BenchConfig,
    baseline_commit: str,
    current: str,
    batch: dict[str, str],
    before_runs: list[WorkloadRun],
    after_runs: list[WorkloadRun],
) -> Scenario:
    before = lowest_per_lead(before_runs)
    after = lowest_per_lead(after_runs)
    scenario = Scenario("cpu")
    scenario.row(
        f"{config.leads:,} leads, one job, {len(before_runs)} run(s) a side",
        f"{baseline_commit} -> {current}",
        f"leads per task {batch['baseline']} -> {batch['current']} "
        "(each revision's own rule, LEADFLOW_TASK_BATCH_SIZE unset)",
    )
    ratios: dict[str, float | None] = {}
    for name in after:
        if name not in before:
            continue
        ratios[name] = ratio3(after[name], before[name])
        counted = "" if name in SUMMED else " (not summed)"
        scenario.row(
            f"{name} CPU ms per lead",
            f"{before[name]:.3f} -> {after[name]:.3f}",
            f"{times(ratios[name])}{counted}",
        )
    total_before, total_after = summed(before), summed(after)
    total_ratio = ratio3(total_after, total_before)
    met = total_ratio is not None and total_ratio <= TARGET_RATIO
    scenario.row(
        "summed CPU ms per lead (" + " + ".join(SUMMED) + ")",
        f"{total_before:.3f} -> {total_after:.3f}",
        f"{times(total_ratio)} (target <= {TARGET_RATIO}x: {'met' if met else 'NOT MET'})",
    )
    own = tuple(name for name in SUMMED if name != "rabbitmq")
    own_ratio = ratio3(sum(after.get(n, 0.0) for n in own), sum(before.get(n, 0.0) for n in own))
    scenario.row("the same without the (shared) broker", "", times(own_ratio))
    best_before = max(run.leads_per_s for run in before_runs)
    best_after = max(run.leads_per_s for run in after_runs)
    scenario.row(
        "leads/s (best run a side; wall clock, load-sensitive)",
        f"{best_before:,.0f} -> {rate(best_after, 'leads/s')}",
    )
    scenario.figures = {
        "leads": config.leads,
        "repeats": len(before_runs),
        "baseline_rev": config.cpu_baseline,
        "baseline_commit": baseline_commit,
        "current": current,
        "leads_per_task": batch,
        "summed_services": list(SUMMED),
        "before": {"cpu_ms_per_lead": before, "runs": [r.figures() for r in before_runs]},
        "after": {"cpu_ms_per_lead": after, "runs": [r.figures() for r in after_runs]},
        "ratio": ratios,
        "summed": {"before": total_before, "after": total_after, "ratio": total_ratio},
        "ratio_without_broker": own_ratio,
        "target_ratio": TARGET_RATIO,
        "met": met,
        "loadavg_now": list(os.getloadavg()),
    }
    if not met:
        scenario.notes.append(
            f"summed CPU per lead {total_ratio}x the baseline's: target <= {TARGET_RATIO}x"
        )
    return scenario
