"""The benchmark harness's own arithmetic: profile parsing, the provider-bound ideal, the
CPU before/after comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bench.config import BenchConfig
from bench.cpu import describe
from bench.provider import Asked, ideal_for
from bench.scale import acked_enrich_tasks
from bench.stacks import package_of, parse_frame, read_profile
from bench.upload import Measured, Reference
from bench.upload import describe as describe_upload
from bench.workload import WorkloadRun
from devtools.ports import free_port
from shared.health import Metrics

MAIN = "<module> (/x/services/router/__main__.py:5)"
LOOP = "run (/usr/lib/python3.11/asyncio/runners.py:190)"
RAW = "\n".join(
    [
        f"{MAIN};{LOOP};record_outcomes (/x/services/router/ledger.py:30)"
        ";insert_leads (/x/services/router/ledger.py:48) 6",
        f"{MAIN};{LOOP};send (/v/.venv/lib/python3.11/site-packages/aiormq/channel.py:9) 3",
        f"{MAIN};EpollSelector.select (/usr/lib/python3.11/selectors.py:468) 11",
    ]
)


@pytest.fixture
def profile_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("bench.stacks.ROOT", Path("/x"))
    path = tmp_path / "router.txt"
    path.write_text(RAW)
    return path


def test_frames_are_shortened_and_classified(profile_path: Path) -> None:
    lib = parse_frame("send (/v/.venv/lib/python3.11/site-packages/aiormq/channel.py:9)")
    std = parse_frame("run (/usr/lib/python3.11/asyncio/runners.py:190)")
    assert (lib.file, package_of(lib)) == ("aiormq/channel.py", "aiormq")
    assert (std.file, package_of(std)) == ("stdlib/asyncio/runners.py", "stdlib asyncio")


def test_profile_excludes_idle_waits_and_charges_leaves(profile_path: Path) -> None:
    profile = read_profile(profile_path)
    summary = profile.summary(rate_hz=10, duration_s=1.0)
    assert (profile.samples, profile.idle) == (9, 11)
    assert summary["not_idle_share"] == 0.9
    assert summary["self_by_function"][0] == ("insert_leads (services/router/ledger.py)", 66.7)
    assert ("services.router.ledger", 66.7) in summary["self_by_package"]
    assert ("record_outcomes (services/router/ledger.py)", 66.7) in summary["inclusive_leadflow"]


def test_ideal_with_single_requests_follows_rounds_and_provider_limits() -> None:
    env = {"LEADFLOW_ENV": "dev", "LEADFLOW_PROVIDER_ALPHA_CONCURRENCY": "64"}
    asked = {"alpha": Asked(requests=1000, people=1000), "beta": Asked(requests=400, people=400)}
    ideal = ideal_for(env, latency_s=0.1, asked=asked, leads=1000)
    assert ideal.in_flight == 8 * 25
    assert ideal.naive == pytest.approx(2000)
    assert ideal.rounds_per_task == pytest.approx(2.0, abs=0.001)  # 1 - 0.6**25 ~ 1
    assert ideal.prefetch_bound == pytest.approx(1000, rel=0.001)
    assert ideal.leads_per_s == pytest.approx(640)
    assert ideal.binding == "provider alpha concurrency 64"


def test_ideal_with_bulk_requests_counts_one_round_per_provider_asked() -> None:
    # 2,000 leads = 80 tasks; alpha asked once per task, beta by 60 of them.
    asked = {"alpha": Asked(requests=80, people=2000), "beta": Asked(requests=60, people=840)}
    ideal = ideal_for({"LEADFLOW_ENV": "dev"}, latency_s=0.1, asked=asked, leads=2000)
    assert ideal.rounds_per_task == pytest.approx(1.75)
    assert ideal.prefetch_bound == pytest.approx(200 / 0.175)
    assert ideal.binding == "prefetch x batch"


def test_drain_counts_acked_enrich_tasks_from_the_services_own_metrics() -> None:
    metrics = Metrics()
    metrics.consumed.labels(queue="lf.enrich", outcome="ack").inc(7)
    metrics.consumed.labels(queue="lf.enrich", outcome="retry").inc(2)
    metrics.consumed.labels(queue="lf.scrape", outcome="ack").inc(5)
    assert acked_enrich_tasks(generate_latest(metrics.registry).decode()) == 7


def cpu_run(**cpu_s: float) -> WorkloadRun:
    return WorkloadRun(
        leads=1000, jobs=1, accept_s=[0.1], first_row_s=0.2, total_s=1.0, cpu_s=cpu_s
    )


def test_cpu_comparison_takes_each_services_lowest_run_and_sums_the_issues_four() -> None:
    before = [
        cpu_run(gateway=0.02, enricher=0.5, router=0.2, rabbitmq=0.1, sandbox=0.05),
        cpu_run(gateway=0.03, enricher=0.4, router=0.3, rabbitmq=0.08, sandbox=0.04),
    ]
    after = [
        cpu_run(gateway=0.01, enricher=0.2, router=0.1, rabbitmq=0.05, sandbox=0.9),
        cpu_run(gateway=0.01, enricher=0.3, router=0.1, rabbitmq=0.04, sandbox=0.9),
    ]
    batch = {"baseline": "25", "current": "100"}
    figures = describe(BenchConfig(leads=1000), "975af16", "abc1234", batch, before, after).figures
    # ms per lead: before 0.02 + 0.4 + 0.2 + 0.08, after 0.01 + 0.2 + 0.1 + 0.04.
    assert figures["summed"] == {"before": 0.7, "after": 0.35, "ratio": 0.5}
    assert figures["met"] is True
    assert figures["ratio"]["enricher"] == 0.5
    assert figures["leads_per_task"] == batch
    assert figures["ratio_without_broker"] == round(0.31 / 0.62, 3)


def peaks(**mib: float) -> dict[str, dict[str, float]]:
    return {name: {"peak_rss_mib": value, "vmhwm_mib": value} for name, value in mib.items()}


def test_upload_is_judged_by_the_issues_three_targets_within_the_run() -> None:
    small = peaks(sandbox=40, enricher=60, scraper=50, router=60, gateway=70)
    reference = Reference(
        e2e_leads=20_000,
        e2e_leads_per_s=2000.0,
        e2e_source="this run's e2e scenario",
        small_leads=10_000,
        small_peaks=small,
        small_source="measured by upload",
    )
    big = peaks(sandbox=400, enricher=66, scraper=50, router=80, gateway=149)
    measured = Measured(300_000, 60.0, 20.0, 200.0, big, {"gateway": 30.0})
    scenario = describe_upload(measured, reference, ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0)))
    targets = scenario.figures["targets"]
    assert scenario.figures["ratio_to_e2e"] == 0.75  # 1,500 leads/s against 2,000
    assert targets["rate_at_least_floor"] is False
    assert targets["gateway_peak_under_limit"] is True
    # The router grew a third; the sandbox is not judged however much it grows.
    assert scenario.figures["growth_over_10k"] == {
        "enricher": 0.1,
        "scraper": 0.0,
        "router": 0.333,
        "gateway": 1.129,
    }
    assert targets["peaks_within_growth_limit"] is False


def test_free_ports_of_one_process_are_never_the_same_twice() -> None:
    # 200 plain bind(0)s give a repeated port about half the time (the birthday bound over
    # Linux's ~28,000 ephemeral ports).
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
