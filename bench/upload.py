"""Upload: one job of `--upload-leads` leads (default 300,000; `--upload-leads 1000000` for
the full size) sent as an NDJSON file upload, zero-latency sandbox, CSV destination.

The file is written to disk first, a chunk of leads at a time, and streamed to the
gateway from disk, so neither side holds it. Timed from the first byte sent to the last
CSV row. Judged against issue 15: the gateway's peak RSS under 150 MiB; no service's peak
more than 20 % above its figure of the memory scenario's 10,000-lead run (this run's, or
the last saved one); leads/s at least 0.8x the e2e scenario's.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from bench.client import CsvProgress, Gateway, GatewayError, client_session
from bench.config import BenchConfig
from bench.harness import csv_path, leadflow_stack, service_pids, with_broker
from bench.procs import CpuMeter, RssSampler
from bench.report import RunReport, Scenario, previous_figures, rate, ratio
from bench.workload import require_completed
from devtools.samples import make_leads
from devtools.stack import SERVICES

CSV_NAME = "bench-upload"
GATEWAY_PEAK_LIMIT_MIB = 150.0
GROWTH_LIMIT = 0.20
RATE_FLOOR = 0.8  # of the e2e scenario's leads/s
WRITE_CHUNK = 10_000


def write_ndjson(path: Path, count: int) -> None:
    """`count` leads, a line each, without holding them all (ids left to the gateway)."""
    with path.open("wb") as f:
        for n, start in enumerate(range(0, count, WRITE_CHUNK)):
            leads = make_leads(min(WRITE_CHUNK, count - start), seed=1000 + n, with_ids=False)
            f.write(b"".join(msgspec.json.encode(lead) + b"\n" for lead in leads))


async def upload(session: aiohttp.ClientSession, base_url: str, path: Path) -> str:
    form = aiohttp.MultipartWriter("form-data")
    job = form.append_json({"destinations": [{"type": "csv", "name": CSV_NAME}]})
    job.set_content_disposition("form-data", name="job")
    with path.open("rb") as file:
        leads = form.append(file, {"Content-Type": "application/x-ndjson"})
        leads.set_content_disposition("form-data", name="leads", filename=path.name)
        async with session.post(
            f"{base_url}/v1/jobs/enrich",
            data=form,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
        ) as response:
            payload = await response.read()
    if response.status != 202:
        raise GatewayError(f"upload: {response.status} {payload[:300]!r}")
    job_id: str = msgspec.json.decode(payload)["job_id"]
    return job_id


async def run(config: BenchConfig, report: RunReport) -> Scenario:
    count = config.upload_leads
    with tempfile.TemporaryDirectory(prefix="lf-upload-") as folder:
        path = Path(folder) / "leads.ndjson"
        await asyncio.to_thread(write_ndjson, path, count)
        file_mib = path.stat().st_size / 1024**2
        async with leadflow_stack() as stack:
            sampler = RssSampler(service_pids(stack, SERVICES))
            meter = CpuMeter(with_broker(service_pids(stack)))
            progress = CsvProgress(csv_path(stack, CSV_NAME))
            timeout_s = config.timeout_s(count)
            async with client_session() as session:
                sampler.start()
                meter.start()
                started = time.monotonic()
                watching = asyncio.ensure_future(progress.wait_rows(count, timeout_s))
                try:
                    job_id = await upload(session, stack.url("gateway"), path)
                    accepted_s = time.monotonic() - started
                    done_at = await watching
                finally:
                    if not watching.done():
                        watching.cancel()
                    peaks = await sampler.stop()
                cpu = meter.stop()
                await require_completed(Gateway(session, stack.url("gateway")), job_id)
    total_s = done_at - started
    return describe(config, report, count, file_mib, accepted_s, total_s, peaks, cpu)


def describe(
    config: BenchConfig,
    report: RunReport,
    count: int,
    file_mib: float,
    accepted_s: float,
    total_s: float,
    peaks: dict[str, dict[str, float]],
    cpu: dict[str, float],
) -> Scenario:
    leads_per_s = count / total_s
    scenario = Scenario("upload")
    e2e = report.figures("e2e") or previous_figures("e2e", config.results_dir) or {}
    to_e2e = ratio(leads_per_s, e2e.get("leads_per_s"))
    scenario.row(
        f"{count:,} leads, one NDJSON upload ({file_mib:.0f} MiB)",
        rate(leads_per_s, "leads/s"),
        f"{to_e2e}x the e2e figure (floor {RATE_FLOOR}x)" if to_e2e else "no e2e figure",
    )
    scenario.row("upload -> 202 (every task queued)", f"{accepted_s:.1f} s")
    scenario.row("upload -> all CSV rows", f"{total_s:.1f} s")
    gateway_peak = peaks["gateway"]["vmhwm_mib"]
    scenario.row(
        "gateway peak RSS",
        f"{gateway_peak:.0f} MiB",
        f"limit {GATEWAY_PEAK_LIMIT_MIB:.0f} MiB: "
        + ("ok" if gateway_peak < GATEWAY_PEAK_LIMIT_MIB else "OVER"),
    )
    growth = growth_over_baseline(config, report, peaks)
    for name, grew in growth.items():
        verdict = "ok" if grew <= GROWTH_LIMIT else "GROWS"
        scenario.row(f"{name} peak RSS vs 10,000 leads", f"{grew:+.0%}", verdict)
    scenario.row(
        "CPU ms per lead",
        ", ".join(f"{name} {s * 1000 / count:.3f}" for name, s in cpu.items()),
    )
    scenario.figures = {
        "leads": count,
        "file_mib": round(file_mib, 1),
        "accept_s": round(accepted_s, 2),
        "total_s": round(total_s, 2),
        "leads_per_s": round(leads_per_s, 1),
        "ratio_to_e2e": to_e2e,
        "peaks": peaks,
        "growth_over_10k": growth,
        "cpu_s": cpu,
        "cpu_ms_per_lead": {k: round(v * 1000 / count, 3) for k, v in cpu.items()},
    }
    if gateway_peak >= GATEWAY_PEAK_LIMIT_MIB:
        scenario.notes.append(f"gateway peak RSS {gateway_peak:.0f} MiB: over the limit")
    if to_e2e is not None and to_e2e < RATE_FLOOR:
        scenario.notes.append(f"leads/s {to_e2e}x the e2e figure: under {RATE_FLOOR}x")
    return scenario


def growth_over_baseline(
    config: BenchConfig, report: RunReport, peaks: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Each leadflow service's peak over its peak in the memory scenario's 10,000-lead run."""
    memory: dict[str, Any] = (
        report.figures("memory") or previous_figures("memory", config.results_dir) or {}
    )
    baseline = memory.get("baseline", {}).get("peaks", {})
    return {
        name: round(peaks[name]["vmhwm_mib"] / baseline[name]["vmhwm_mib"] - 1, 3)
        for name in SERVICES
        if name != "sandbox" and baseline.get(name, {}).get("vmhwm_mib")
    }
