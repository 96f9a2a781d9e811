"""`make run`: every service up, the sample leads through the pipeline, the results shown.

Uses services already running on the default ports (`make up`) when there are some;
otherwise starts its own for the run and stops them at the end.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from devtools.probe import http_ok
from devtools.stack import ROOT, Stack

SAMPLE = ROOT / "samples" / "leads.csv"
SHOWN_COLUMNS = (
    "id",
    "full_name",
    "seniority",
    "department",
    "company_domain",
    "email",
    "email_status",
)
BAR_WIDTH = 40


def main() -> None:
    data_dir = Path(os.environ.get("LEADFLOW_DATA_DIR", ROOT / "var")).resolve()
    stack = Stack(
        data_dir,
        env={"LEADFLOW_SANDBOX_LATENCY_MS": os.environ.get("LEADFLOW_SANDBOX_LATENCY_MS", "250")},
    )
    started_here = not http_ok(f"{stack.url('gateway')}/readyz")
    if started_here:
        print(f"starting services (logs in {data_dir / 'log'}) ...")
        stack.start()
    try:
        run_demo(stack.url("gateway"), data_dir)
    finally:
        if started_here:
            print("stopping services ...")
            stack.stop()


def run_demo(gateway: str, data_dir: Path) -> None:
    leads = read_leads(SAMPLE)
    csv_name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    job = request(
        "POST",
        f"{gateway}/v1/jobs/enrich",
        {
            "leads": leads,
            "destinations": [{"type": "csv", "name": csv_name}, {"type": "dashboard"}],
        },
    )
    print(f"submitted {len(leads)} leads from {SAMPLE.relative_to(ROOT)} as {job['job_id']}")
    status = follow(f"{gateway}{job['status_url']}")
    progress = status["progress"]
    print(
        f"\njob {status['state']}: {progress['enriched']} enriched, {progress['failed']} failed"
        f" of {progress['total']}"
    )
    if status["state"] != "completed":
        sys.exit(f"the job did not complete: {status.get('error')}")
    csv_path = data_dir / "exports" / "default" / f"{csv_name}.csv"
    print(f"CSV: {csv_path}")
    show_rows(csv_path)


def follow(status_url: str) -> dict[str, Any]:
    while True:
        status = request("GET", status_url)
        progress = status["progress"]
        filled = int(BAR_WIDTH * progress["percent"] / 100)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        counts = f"{progress['done']}/{progress['total']}"
        print(
            f"\r[{bar}] {progress['percent']:5.1f}%  {counts}  {status['state']:<9}",
            end="",
            flush=True,
        )
        if status["state"] in ("completed", "failed", "cancelled", "timed_out"):
            return status
        time.sleep(0.25)


def show_rows(path: Path, count: int = 5) -> None:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with_email = sum(1 for row in rows if row["email"])
    print(f"{len(rows)} rows, {with_email} with an email; the first {count}:")
    widths = {c: max(len(c), *(len(r[c]) for r in rows[:count])) for c in SHOWN_COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in SHOWN_COLUMNS))
    for row in rows[:count]:
        print("  ".join(row[c].ljust(widths[c]) for c in SHOWN_COLUMNS))


def read_leads(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


def request(method: str, url: str, body: object | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(  # noqa: S310 - our own gateway
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - our own gateway
        result: dict[str, Any] = json.load(response)
        return result


if __name__ == "__main__":
    main()
