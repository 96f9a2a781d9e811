"""Upload: one job of `--upload-leads` leads (default 300,000; `--upload-leads 1000000` for
the full size) sent as an NDJSON file upload, zero-latency sandbox, CSV destination.

The file is written to disk first, a chunk of leads at a time, and streamed to the
gateway from disk, so neither side holds it. Timed from the first byte sent to the last
CSV row. Judged against issue 15, within the run: the job completes; the gateway's peak
RSS under 150 MiB; no service's peak more than 20 % above its peak in the memory
scenario's 10,000-lead run; leads/s at least 0.8x the e2e scenario's (20,000 leads, one
JSON job). When e2e or memory is not part of the run, this scenario runs that reference
itself, on a fresh stack, before the upload.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec

from bench import e2e, memory
from bench.client import CsvProgress, Gateway, GatewayError, client_session
from bench.config import BenchConfig
from bench.harness import csv_path, leadflow_stack, service_pids, with_broker
from bench.procs import CpuMeter, RssSampler, loadavg
from bench.report import RunReport, Scenario, rate, ratio
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
    # The references first, each on a stack of its own: this run's figures, measured here
    # when their scenario is not part of the run (the issue compares within one run).
    reference = await references(config, report)
    count = config.upload_leads
    load_before = loadavg()
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
    measured = Measured(count, file_mib, accepted_s, done_at - started, peaks, cpu)
    return describe(measured, reference, (load_before, loadavg()))


@dataclass(frozen=True)
class Reference:
    """What the upload is judged against: the e2e job's leads/s, the 10,000-lead peaks."""

    e2e_leads: int
    e2e_leads_per_s: float
    e2e_source: str
    small_leads: int
    small_peaks: dict[str, dict[str, float]]
    small_source: str


@dataclass(frozen=True)
class Measured:
    leads: int
    file_mib: float
    accept_s: float
    total_s: float
    peaks: dict[str, dict[str, float]]
    cpu: dict[str, float]

    @property
    def leads_per_s(self) -> float:
        return self.leads / self.total_s


async def references(config: BenchConfig, report: RunReport) -> Reference:
    e2e_figures = report.figures("e2e")
    if e2e_figures is not None:
        e2e_rate, e2e_source = float(e2e_figures["leads_per_s"]), "this run's e2e scenario"
    else:
        print(f"   upload: the e2e reference ({config.leads:,} leads) ...", flush=True)
        e2e_rate, e2e_source = (await e2e.measure(config)).leads_per_s, "measured by upload"
    memory_figures = report.figures("memory")
    if memory_figures is not None:
        small, small_source = memory_figures["baseline"], "this run's memory scenario"
    else:
        leads = config.memory_baseline_leads
        print(f"   upload: the {leads:,}-lead memory reference ...", flush=True)
        small, small_source = await memory.peaks_during(leads, config), "measured by upload"
    return Reference(
        e2e_leads=config.leads,
        e2e_leads_per_s=round(e2e_rate, 1),
        e2e_source=e2e_source,
        small_leads=config.memory_baseline_leads,
        small_peaks=small["peaks"],
        small_source=small_source,
    )


def describe(
    measured: Measured, reference: Reference, load: tuple[tuple[float, ...], tuple[float, ...]]
) -> Scenario:
    count, peaks = measured.leads, measured.peaks
    scenario = Scenario("upload")
    to_e2e = ratio(measured.leads_per_s, reference.e2e_leads_per_s)
    fast_enough = to_e2e is not None and to_e2e >= RATE_FLOOR
    scenario.row(
        f"{count:,} leads, one NDJSON upload ({measured.file_mib:.0f} MiB): completed",
        rate(measured.leads_per_s, "leads/s"),
        f"{to_e2e}x the {reference.e2e_leads:,}-lead e2e's "
        f"{rate(reference.e2e_leads_per_s, 'leads/s')} ({reference.e2e_source}); "
        f"floor {RATE_FLOOR}x: {'ok' if fast_enough else 'UNDER'}",
    )
    scenario.row("upload -> 202 (every task queued)", f"{measured.accept_s:.1f} s")
    scenario.row("upload -> all CSV rows", f"{measured.total_s:.1f} s")
    gateway_peak = peaks["gateway"]["vmhwm_mib"]
    gateway_ok = gateway_peak < GATEWAY_PEAK_LIMIT_MIB
    scenario.row(
        "gateway peak RSS",
        f"{gateway_peak:.0f} MiB",
        f"limit {GATEWAY_PEAK_LIMIT_MIB:.0f} MiB: " + ("ok" if gateway_ok else "OVER"),
    )
    growth = growth_over(reference.small_peaks, peaks)
    for name, grew in growth.items():
        before = reference.small_peaks[name]["vmhwm_mib"]
        scenario.row(
            f"{name} peak RSS vs {reference.small_leads:,} leads",
            f"{before:.0f} -> {peaks[name]['vmhwm_mib']:.0f} MiB",
            f"{grew:+.0%} (limit +{GROWTH_LIMIT:.0%}: {'ok' if grew <= GROWTH_LIMIT else 'GROWS'})",
        )
    scenario.row(
        "CPU ms per lead",
        ", ".join(f"{name} {s * 1000 / count:.3f}" for name, s in measured.cpu.items()),
    )
    scenario.row("load average (1, 5, 15 min) before / after", f"{load[0]} / {load[1]}")
    flat = all(grew <= GROWTH_LIMIT for grew in growth.values())
    scenario.figures = {
        "leads": count,
        "file_mib": round(measured.file_mib, 1),
        "accept_s": round(measured.accept_s, 2),
        "total_s": round(measured.total_s, 2),
        "leads_per_s": round(measured.leads_per_s, 1),
        "e2e_reference": {
            "leads": reference.e2e_leads,
            "leads_per_s": reference.e2e_leads_per_s,
            "source": reference.e2e_source,
        },
        "ratio_to_e2e": to_e2e,
        "peaks": peaks,
        "small_reference": {
            "leads": reference.small_leads,
            "peaks": reference.small_peaks,
            "source": reference.small_source,
        },
        "growth_over_10k": growth,
        "targets": {
            "completed": True,  # else require_completed raised: the scenario failed
            "gateway_peak_under_limit": gateway_ok,
            "peaks_within_growth_limit": flat,
            "rate_at_least_floor": fast_enough,
        },
        "cpu_s": measured.cpu,
        "cpu_ms_per_lead": {k: round(v * 1000 / count, 3) for k, v in measured.cpu.items()},
        "loadavg": {"before": load[0], "after": load[1]},
    }
    if not gateway_ok:
        scenario.notes.append(f"gateway peak RSS {gateway_peak:.0f} MiB: over the limit")
    if not flat:
        over = ", ".join(f"{n} {g:+.0%}" for n, g in growth.items() if g > GROWTH_LIMIT)
        scenario.notes.append(f"peak RSS more than {GROWTH_LIMIT:.0%} over 10,000 leads: {over}")
    if not fast_enough:
        scenario.notes.append(f"leads/s {to_e2e}x the e2e figure: under {RATE_FLOOR}x")
    return scenario


def growth_over(
    small: dict[str, dict[str, float]], peaks: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Each leadflow service's peak over its peak in the 10,000-lead run (the sandbox, a
    test double keeping stats on everyone asked, is not judged)."""
    return {
        name: round(peaks[name]["vmhwm_mib"] / small[name]["vmhwm_mib"] - 1, 3)
        for name in SERVICES
        if name != "sandbox" and small.get(name, {}).get("vmhwm_mib")
    }
