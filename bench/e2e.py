"""leadflow end to end: one job of N leads through every service, zero-latency providers.

Two broker hops (task -> enricher, event -> router), so the ceiling it is compared with
is the raw two-hop figure. leadflow carries 25 leads per message, so leads/s can exceed
the ceiling's msg/s: the ratio says how much of the broker's capacity the pipeline turns
into leads, not a fraction that must stay below 1.
"""

from __future__ import annotations

from bench.config import BenchConfig
from bench.harness import leadflow_stack
from bench.pgdb import postgres_available, temporary_database
from bench.report import RunReport, Scenario, previous_figures, rate, ratio
from bench.workload import WorkloadRun, run_workload

LEADFLOW_HOPS = 2


def ceiling_msgs_per_s(report: RunReport, hops: int) -> tuple[float | None, str]:
    """The broker ceiling for `hops`, from this run or else the last saved one."""
    for figures, source in (
        (report.figures("broker"), "this run"),
        (previous_figures("broker", report.results_dir), "saved run"),
    ):
        if figures and str(hops) in figures.get("hops", {}):
            where = f"{source} {figures['from']}" if "from" in figures else source
            return float(figures["hops"][str(hops)]["msgs_per_s"]), where
    return None, "not measured"


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    return describe(await measure(config), report)


async def measure(config: BenchConfig) -> WorkloadRun:
    """The e2e job on a fresh stack (also the upload scenario's reference when e2e is not
    part of the run)."""
    env = {"LEADFLOW_MAX_LEADS_PER_JOB": str(max(config.leads, config.job_chunk))}
    async with leadflow_stack(env) as stack:
        return await run_workload(
            stack, config.leads, chunk=config.leads, timeout_s=config.timeout_s(config.leads)
        )


async def run_pg(config: BenchConfig, report: RunReport) -> Scenario:
    """The same job with the store on PostgreSQL, set beside this run's SQLite figure."""
    reason = await postgres_available()
    if reason is not None:
        scenario = Scenario("e2e-pg", figures={"skipped": reason})
        scenario.row("e2e on PostgreSQL", "skipped", reason)
        return scenario
    async with temporary_database() as url:
        env = {
            "LEADFLOW_MAX_LEADS_PER_JOB": str(max(config.leads, config.job_chunk)),
            "LEADFLOW_STORE_URL": url,
        }
        async with leadflow_stack(env) as stack:
            result = await run_workload(
                stack, config.leads, chunk=config.leads, timeout_s=config.timeout_s(config.leads)
            )
    scenario = Scenario("e2e-pg", figures=result.figures())
    sqlite = report.figures("e2e")
    to_sqlite = ratio(result.leads_per_s, sqlite["leads_per_s"]) if sqlite else None
    scenario.figures["ratio_to_sqlite"] = to_sqlite
    scenario.row(
        f"{result.leads:,} leads, one job, PostgreSQL store",
        rate(result.leads_per_s, "leads/s"),
        f"{to_sqlite}x the SQLite e2e of this run" if to_sqlite else "no SQLite e2e this run",
    )
    scenario.row("CPU ms per lead", cpu_line(result))
    return scenario


def describe(result: WorkloadRun, report: RunReport) -> Scenario:
    scenario = Scenario("e2e", figures=result.figures())
    ceiling, source = ceiling_msgs_per_s(report, LEADFLOW_HOPS)
    to_ceiling = ratio(result.leads_per_s, ceiling)
    scenario.figures |= {"ceiling_2_hops_msgs_per_s": ceiling, "ratio_to_ceiling": to_ceiling}
    compared = (
        f"{to_ceiling}x the 2-hop ceiling ({rate(ceiling, 'msg/s')}, {source})"
        if ceiling
        else "no broker ceiling measured"
    )
    scenario.row(f"{result.leads:,} leads, one job", rate(result.leads_per_s, "leads/s"), compared)
    scenario.row("POST accepted", f"{result.accept_s[0]:.2f} s")
    scenario.row("time to first CSV row", f"{result.first_row_s:.2f} s")
    scenario.row("POST -> all CSV rows", f"{result.total_s:.1f} s")
    scenario.row("CPU ms per lead", cpu_line(result))
    return scenario


def cpu_line(result: WorkloadRun) -> str:
    per_lead = result.figures()["cpu_ms_per_lead"]
    return ", ".join(f"{name} {ms:.2f}" for name, ms in per_lead.items())
