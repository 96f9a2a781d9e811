"""The commands: each takes the parsed arguments and a Client, prints, returns the exit code.

Results go to stdout, progress and notes to stderr, so `leadflow export ID` and
`leadflow jobs --json` can be piped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from leadflow_cli.client import ApiError, Client, MultipartFile, job_path
from leadflow_cli.errors import EXIT_JOB_UNSUCCESSFUL, EXIT_OK, UsageError
from leadflow_cli.export import export_leads
from leadflow_cli.leadfile import Upload, read_lead_file, upload_of
from leadflow_cli.render import (
    ProgressBar,
    UploadBar,
    counts,
    destination_lines,
    job_details,
    jobs_table,
    schedule_details,
    schedules_table,
)

TERMINAL_STATES = ("completed", "failed", "cancelled", "timed_out")
POLL_INTERVAL_S = 0.5
EXIT_INTERRUPTED = 130
LEAD_FIELD = re.compile(r"^leads\[(\d+)\]")


def note(message: str) -> None:
    print(message, file=sys.stderr)


def enrich(args: argparse.Namespace, client: Client) -> int:
    upload = upload_of(Path(args.file))
    if upload is not None:
        return enrich_upload(args, client, upload)
    lead_file = read_lead_file(Path(args.file))
    for warning in lead_file.warnings():
        note(f"leadflow: warning: {args.file}: {warning}")
    body: dict[str, Any] = {"leads": lead_file.leads, "destinations": destinations(args)}
    if args.priority:
        body["priority"] = args.priority
    if args.max_credits is not None:
        body["max_credits"] = args.max_credits
    if args.dry_run:
        body["dry_run"] = True
    try:
        accepted = client.post("/v1/jobs/enrich", body)
    except ApiError as e:
        raise with_origins(e, lead_file.origins) from None
    if args.dry_run:
        print(json.dumps(accepted["estimate"], indent=2))
        return EXIT_OK
    print(
        f"submitted {len(lead_file.leads)} leads as job {accepted['job_id']} ({accepted['state']})"
    )
    return follow(client, accepted["job_id"]) if args.follow else EXIT_OK


def enrich_upload(args: argparse.Namespace, client: Client, upload: Upload) -> int:
    """A CSV or NDJSON file sent as it is, streamed (the gateway reads it line by line)."""
    path = Path(args.file)
    for warning in upload.notes:
        note(f"leadflow: warning: {args.file}: {warning}")
    job: dict[str, Any] = {"destinations": destinations(args)}
    if args.priority:
        job["priority"] = args.priority
    bar = UploadBar(sys.stderr, path.name)
    form = MultipartFile(job, path, upload.media_type, bar.update)
    try:
        accepted = client.upload("/v1/jobs/enrich", form)
    finally:
        form.close()
        bar.close()
    total = client.get(job_path(accepted["job_id"]))["progress"]["total"]
    print(f"submitted {total} leads as job {accepted['job_id']} ({accepted['state']})")
    return follow(client, accepted["job_id"]) if args.follow else EXIT_OK


def scrape(args: argparse.Namespace, client: Client) -> int:
    accepted = client.post("/v1/jobs/scrape", scrape_body(args))
    print(f"scrape job {accepted['job_id']} ({accepted['state']})")
    return follow(client, accepted["job_id"]) if args.follow else EXIT_OK


def scrape_body(args: argparse.Namespace) -> dict[str, Any]:
    """A scrape job's body from `leadflow scrape`'s (or `schedules create`'s) arguments."""
    query = {"keywords": args.keywords}
    if args.geo:
        query["geo"] = args.geo
    body: dict[str, Any] = {
        "source": args.source,
        "query": query,
        "enrich": args.enrich,
        "destinations": destinations(args),
    }
    for name in ("max_pages", "max_leads", "priority"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    return body


def destinations(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.webhook_secret and not args.webhook:
        raise UsageError("--webhook-secret needs --webhook URL")
    chosen: list[dict[str, Any]] = []
    if args.webhook:
        webhook = {"type": "webhook", "url": args.webhook}
        if args.webhook_secret:
            webhook["secret"] = args.webhook_secret
        chosen.append(webhook)
    if args.csv:
        chosen.append({"type": "csv", "name": args.csv})
    return chosen


def with_origins(error: ApiError, origins: list[str]) -> ApiError:
    """Name the file line of each `leads[i]` the API complains about."""

    def located(field: str) -> str:
        match = LEAD_FIELD.match(field)
        if match is None or int(match[1]) >= len(origins):
            return field
        return f"{origins[int(match[1])]} ({field})"

    errors = [(located(field), message) for field, message in error.field_errors]
    return ApiError(error.status, error.message, errors)


def follow(client: Client, job_id: str) -> int:
    """Poll the job until it ends; the exit code says whether it completed."""
    bar = ProgressBar(sys.stderr)
    try:
        while True:
            job = client.get(job_path(job_id))
            bar.update(job)
            if job["state"] in TERMINAL_STATES:
                break
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        bar.close()
        note(f"stopped following; the job goes on (leadflow status {job_id})")
        return EXIT_INTERRUPTED
    bar.close()
    print(f"job {job_id} {job['state']}: {counts(job)}")
    for line in destination_lines(job):
        print(line)
    if job.get("error"):
        print(f"error: {job['error']}")
    return EXIT_OK if job["state"] == "completed" else EXIT_JOB_UNSUCCESSFUL


def jobs(args: argparse.Namespace, client: Client) -> int:
    page = client.get("/v1/jobs", {"state": args.state, "kind": args.kind, "limit": args.limit})
    if args.json:
        print(json.dumps(page, indent=2))
    elif page["jobs"]:
        print(jobs_table(page["jobs"]))
    else:
        note("no jobs")
    return EXIT_OK


def status(args: argparse.Namespace, client: Client) -> int:
    job = client.get(job_path(args.job_id))
    print(json.dumps(job, indent=2) if args.json else "\n".join(job_details(job)))
    return EXIT_OK


def resume(args: argparse.Namespace, client: Client) -> int:
    body = {} if args.max_credits is None else {"max_credits": args.max_credits}
    answer = client.post(job_path(args.job_id, "/resume"), body)
    print(f"job {args.job_id}: resumed ({answer.get('state')})")
    return EXIT_OK


def rerun(args: argparse.Namespace, client: Client) -> int:
    body = {} if args.max_credits is None else {"max_credits": args.max_credits}
    accepted = client.post(job_path(args.job_id, "/rerun"), body)
    print(f"job {args.job_id}: rerun as job {accepted['job_id']} ({accepted['state']})")
    return follow(client, accepted["job_id"]) if args.follow else EXIT_OK


def cancel(args: argparse.Namespace, client: Client) -> int:
    answer = client.post(job_path(args.job_id, "/cancel"))
    state = answer.get("state") if isinstance(answer, dict) else None
    print(f"job {args.job_id}: cancel requested" + (f" ({state})" if state else ""))
    return EXIT_OK


def export(args: argparse.Namespace, client: Client) -> int:
    job = client.get(job_path(args.job_id))
    if job["state"] not in TERMINAL_STATES:
        note(f"job {args.job_id} is {job['state']}: exporting the leads finished so far")
    leads = job_path(args.job_id, "/leads")
    fmt, written = export_leads(client, leads, args.output, args.format, args.status)
    where = "stdout" if args.output == "-" else args.output
    note(f"wrote {written} leads to {where} ({fmt})")
    return EXIT_OK


def daily(args: argparse.Namespace, client: Client) -> int:
    fmt, written = export_leads(
        client, f"/v1/daily/{quote(args.date, safe='')}", args.output, args.format, None
    )
    where = "stdout" if args.output == "-" else args.output
    note(f"wrote {written} leads of {args.date} (UTC) to {where} ({fmt})")
    return EXIT_OK


def schedule_create(args: argparse.Namespace, client: Client) -> int:
    job: dict[str, Any] = scrape_body(args)
    body: dict[str, Any] = {"job": job, "only_new": args.only_new}
    if args.every is not None:
        body["every_s"] = args.every
    else:
        body["cron"] = args.cron
    created = client.call("POST", "/v1/schedules", body=body)
    print(f"schedule {created['schedule_id']} saved; first run at {created['next_run_at']}")
    return EXIT_OK


def schedule_list(args: argparse.Namespace, client: Client) -> int:
    found = client.get("/v1/schedules")
    if args.json:
        print(json.dumps(found, indent=2))
    elif found["schedules"]:
        print(schedules_table(found["schedules"]))
    else:
        note("no schedules")
    return EXIT_OK


def schedule_show(args: argparse.Namespace, client: Client) -> int:
    found = client.get(schedule_path(args.schedule_id))
    print(json.dumps(found, indent=2) if args.json else "\n".join(schedule_details(found)))
    return EXIT_OK


def schedule_delete(args: argparse.Namespace, client: Client) -> int:
    client.call("DELETE", schedule_path(args.schedule_id))
    print(f"schedule {args.schedule_id} deleted; its runs' jobs stay")
    return EXIT_OK


def schedule_path(schedule_id: str) -> str:
    return f"/v1/schedules/{quote(schedule_id, safe='')}"
