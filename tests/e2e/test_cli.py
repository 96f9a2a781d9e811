"""The `leadflow` console script as a user runs it, against real services."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools.samples import make_leads
from devtools.stack import ROOT, Stack

pytestmark = pytest.mark.e2e

LEADFLOW = Path(sys.executable).with_name("leadflow")
SAMPLE = ROOT / "samples" / "leads.csv"


def leadflow(
    stack: Stack, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert LEADFLOW.exists(), f"{LEADFLOW} is not installed: run `make venv`"
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    return subprocess.run(
        [str(LEADFLOW), *args],
        # PYTHONPATH: this checkout's CLI, not the one the shared venv's editable install names.
        env={
            **base,
            "PYTHONPATH": str(ROOT),
            "LEADFLOW_URL": stack.url("gateway"),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sample_ids() -> list[str]:
    with SAMPLE.open(newline="") as f:
        return [row["id"] for row in csv.DictReader(f)]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("leadflow: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def enriched(stack: Stack) -> tuple[subprocess.CompletedProcess[str], str]:
    """The sample file enriched with --follow; the run and its job id."""
    result = leadflow(stack, "enrich", str(SAMPLE), "--csv", "cli-sample", "--follow")
    job_id = result.stdout.split(" as job ", 1)[1].split()[0] if " as job " in result.stdout else ""
    return result, job_id


def test_enrich_follows_the_job_to_completion_and_prints_the_counts(
    stack: Stack, enriched: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    result, job_id = enriched
    assert result.returncode == 0, result.stderr
    assert f"submitted 300 leads as job {job_id}" in result.stdout
    summary = next(line for line in result.stdout.splitlines() if line.startswith("job "))
    assert summary.startswith(f"job {job_id} completed: ")
    assert summary.endswith("failed of 300")
    assert "300/300  completed" in result.stderr  # the last state of the progress bar
    with (stack.data_dir / "exports" / "default" / "cli-sample.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 300


def test_status_and_jobs_show_the_job(
    stack: Stack, enriched: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    _, job_id = enriched
    status = leadflow(stack, "status", job_id)
    assert status.returncode == 0, status.stderr
    fields = dict(line.split(None, 1) for line in status.stdout.splitlines()[:4])
    assert fields == {"job": job_id, "kind": "enrich", "state": "completed", "priority": "normal"}
    assert "  csv cli-sample.csv: 300 delivered, 0 failed, 0 pending" in status.stdout
    as_json = json.loads(leadflow(stack, "status", job_id, "--json").stdout)
    assert as_json["progress"]["done"] == 300

    listing = leadflow(stack, "jobs", "--state", "completed")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["JOB", "KIND", "STATE", "DONE", "ENRICHED", "FAILED", "CREATED"]
    assert any(row.split()[:4] == [job_id, "enrich", "completed", "300/300"] for row in rows)


def test_export_writes_every_lead_in_each_format(
    stack: Stack, enriched: tuple[subprocess.CompletedProcess[str], str], tmp_path: Path
) -> None:
    _, job_id = enriched
    out = tmp_path / "out.csv"
    result = leadflow(stack, "export", job_id, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote 300 leads to {out} (csv)" in result.stderr
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["id"] for row in rows) == sorted(sample_ids())
    assert next(iter(rows[0])) == "id"

    leadflow(stack, "export", job_id, "-o", str(tmp_path / "out.json"))
    assert len(json.loads((tmp_path / "out.json").read_text())) == 300
    ndjson = leadflow(stack, "export", job_id, "--format", "ndjson")
    assert len([json.loads(line) for line in ndjson.stdout.splitlines()]) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.json"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not,a,lead\n1,2,3\n", "none of the columns is a lead field"),
        ('{"leads": [', "not valid JSON"),
    ],
)
def test_an_unusable_file_is_exit_2_and_one_line(
    stack: Stack, tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / ("leads.json" if content.startswith("{") else "leads.csv")
    path.write_text(content)
    result = leadflow(stack, "enrich", str(path), "--follow")
    assert result.returncode == 2
    assert expected in one_error_line(result)
    assert result.stdout == ""


def test_leads_the_gateway_refuses_are_named_by_their_line(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "Full Name,LinkedIn,E-mail\n"
        "Ada Lovelace,https://www.linkedin.com/in/ada,\n"
        "Grace Hopper,https://example.com/grace,\n"
    )
    result = leadflow(stack, "enrich", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "leadflow: error: Validation failed (HTTP 422)",
        "  line 3 (linkedin_url): not a LinkedIn profile URL"
        " (https://www.linkedin.com/in/<handle>)",
    ]


def test_a_file_beyond_a_json_body_uploads_as_it_is_with_a_progress_bar(
    stack: Stack, tmp_path: Path
) -> None:
    leads = make_leads(12_000, seed=1510, with_ids=False)  # more than a JSON body may hold
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*leads[0], "Notes"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**lead, "Notes": "x" * 40} for lead in leads)
    result = leadflow(stack, "enrich", str(path), "--follow")
    assert result.returncode == 0, result.stderr
    assert "submitted 12000 leads as job " in result.stdout
    errors = result.stderr.splitlines()
    assert errors[0] == "leadflow: warning: " + str(path) + (
        ": ignoring columns that are not lead fields: 'Notes'"
    )
    uploading = [line for line in errors if line.endswith("uploading big.csv")]
    assert len(uploading) >= 2, result.stderr
    assert "100.0%" in uploading[-1]
    assert "12000/12000  completed" in result.stderr


def test_an_unknown_job_is_exit_2(stack: Stack) -> None:
    result = leadflow(stack, "status", "job_nope")
    assert result.returncode == 2
    assert one_error_line(result) == "leadflow: error: no job 'job_nope' (HTTP 404)"


def test_scrape_follows_a_job_to_its_end(stack: Stack) -> None:
    result = leadflow(
        stack,
        "scrape",
        "--source",
        "sandbox",
        "--keywords",
        "cto",
        "--max-pages",
        "2",
        "--enrich",
        "--follow",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scrape job job_")
    job_id = result.stdout.split()[2]
    status = leadflow(stack, "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    progress = json.loads(status.stdout)["progress"]
    assert progress["pages"] == 2
    assert progress["scraped"] == progress["done"] == 50


def test_an_unknown_source_is_exit_2(stack: Stack) -> None:
    result = leadflow(stack, "scrape", "--source", "nowhere", "--keywords", "cto")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "leadflow: error: Validation failed (HTTP 422)",
        "  source: unknown source; configured: sandbox",
    ]


def test_the_api_key_comes_from_the_environment(
    stack_factory: Callable[..., Stack],
) -> None:
    keyed = stack_factory({"LEADFLOW_API_KEYS": "acme:acme-key-123"})
    keyed.start("gateway")
    refused = leadflow(keyed, "jobs", env={"LEADFLOW_API_KEY": "wrong-key-000"})
    assert refused.returncode == 2
    assert "LEADFLOW_API_KEY" in one_error_line(refused)
    accepted = leadflow(keyed, "jobs", env={"LEADFLOW_API_KEY": "acme-key-123"})
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stderr == "no jobs\n"
    flag = leadflow(keyed, "jobs", "--api-key", "acme-key-123")
    assert flag.returncode == 0, flag.stderr


def test_daily_saves_the_day_s_results_and_names_a_bad_date(
    stack: Stack, enriched: tuple[subprocess.CompletedProcess[str], str], tmp_path: Path
) -> None:
    assert enriched[0].returncode == 0, enriched[0].stderr
    today = datetime.now(UTC).date().isoformat()
    out = tmp_path / "day.csv"
    result = leadflow(stack, "daily", today, "-o", str(out))
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as f:
        ids = {row["id"] for row in csv.DictReader(f)}
    assert set(sample_ids()) <= ids
    assert f"of {today} (UTC)" in result.stderr

    bad = leadflow(stack, "daily", "2026-13-01")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "date: '2026-13-01' is not a UTC day" in bad.stderr


def test_schedules_create_list_show_delete(stack: Stack) -> None:
    created = leadflow(
        stack,
        "schedules",
        "create",
        "--every",
        "3600",
        "--only-new",
        "--source",
        "sandbox",
        "--keywords",
        "cto",
        "--max-leads",
        "5",
    )
    assert created.returncode == 0, created.stderr
    schedule_id = created.stdout.split()[1]
    assert schedule_id.startswith("sch_")
    listed = leadflow(stack, "schedules", "list")
    assert listed.returncode == 0
    assert schedule_id in listed.stdout
    assert "every 3600 s" in listed.stdout
    shown = leadflow(stack, "schedules", "show", schedule_id, "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["only_new"] is True
    deleted = leadflow(stack, "schedules", "delete", schedule_id)
    assert deleted.returncode == 0, deleted.stderr
    gone = leadflow(stack, "schedules", "show", schedule_id)
    assert gone.returncode == 2
    assert "no schedule" in one_error_line(gone)

    refused = leadflow(
        stack,
        "schedules",
        "create",
        "--cron",
        "0 25 * * *",
        "--source",
        "sandbox",
        "--keywords",
        "x",
    )
    assert refused.returncode == 2
    assert "cron" in refused.stderr
