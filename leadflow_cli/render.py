"""What the CLI shows: job and schedule tables, one job's status, the progress bar, counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

BAR_WIDTH = 30
LOG_STEP_PERCENT = 10.0
JobView = dict[str, Any]


def counts(job: JobView) -> str:
    progress = job["progress"]
    total = progress["total"]
    of = f" of {total}" if total is not None else ""
    return f"{progress['enriched']} enriched, {progress['failed']} failed{of}"


def progress_line(job: JobView) -> str:
    progress = job["progress"]
    total = progress["total"]
    if total is None:  # a scrape that does not know its size yet
        return f"[{'?' * BAR_WIDTH}] {progress['done']} leads  {job['state']}"
    filled = int(BAR_WIDTH * min(progress["percent"], 100.0) / 100)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return f"[{bar}] {progress['percent']:5.1f}%  {progress['done']}/{total}  {job['state']}"


def destination_lines(job: JobView) -> list[str]:
    lines = []
    for dest in job.get("destinations") or []:
        name = f" {dest['name']}" if dest.get("name") else ""
        line = (
            f"  {dest['type']}{name}: {dest['delivered']} delivered, {dest['failed']} failed,"
            f" {dest['pending']} pending"
        )
        if dest.get("last_error"):
            line += f" (last error: {dest['last_error']})"
        lines.append(line)
    return lines


def job_details(job: JobView) -> list[str]:
    progress = job["progress"]
    total = "?" if progress["total"] is None else progress["total"]
    rows = [
        ("job", job["job_id"]),
        ("kind", job["kind"]),
        ("state", job["state"]),
        ("priority", job["priority"]),
        (
            "progress",
            f"{progress['done']}/{total} ({progress['percent']}%): "
            f"{progress['enriched']} enriched, {progress['failed']} failed",
        ),
        ("created", job["created_at"]),
        ("started", job.get("started_at")),
        ("finished", job.get("finished_at")),
        ("depends on", job.get("depends_on")),
        ("error", job.get("error")),
    ]
    shown = [(label, value) for label, value in rows if value is not None]
    width = max(len(label) for label, _ in shown)
    lines = [f"{label.ljust(width)}  {value}" for label, value in shown]
    dests = destination_lines(job)
    return [*lines, "destinations:", *dests] if dests else lines


def jobs_table(jobs: Sequence[JobView]) -> str:
    rows = []
    for job in jobs:
        progress = job["progress"]
        total = "?" if progress["total"] is None else str(progress["total"])
        rows.append(
            [
                job["job_id"],
                job["kind"],
                job["state"],
                f"{progress['done']}/{total}",
                str(progress["enriched"]),
                str(progress["failed"]),
                job["created_at"],
            ]
        )
    return table(["JOB", "KIND", "STATE", "DONE", "ENRICHED", "FAILED", "CREATED"], rows)


def when(schedule: dict[str, Any]) -> str:
    return (
        f"every {schedule['every_s']} s" if schedule.get("every_s") else f"cron {schedule['cron']}"
    )


def search(schedule: dict[str, Any]) -> str:
    job = schedule["job"]
    terms = " ".join(f"{k}={v}" for k, v in job["query"].items())
    return f"{job['source']}: {terms}"


def schedules_table(schedules: Sequence[dict[str, Any]]) -> str:
    rows = []
    for schedule in schedules:
        last = schedule.get("last_run") or {}
        rows.append(
            [
                schedule["schedule_id"],
                when(schedule),
                "yes" if schedule["only_new"] else "no",
                search(schedule),
                schedule["next_run_at"],
                last.get("state", "-"),
            ]
        )
    return table(["SCHEDULE", "WHEN", "ONLY NEW", "SEARCH", "NEXT RUN", "LAST RUN"], rows)


def schedule_details(schedule: dict[str, Any]) -> list[str]:
    lines = [
        f"schedule  {schedule['schedule_id']}",
        f"when      {when(schedule)} (UTC)",
        f"only new  {'yes' if schedule['only_new'] else 'no'}",
        f"search    {search(schedule)}",
        f"created   {schedule['created_at']}",
        f"next run  {schedule['next_run_at']}",
    ]
    runs = schedule.get("runs") or []
    if not runs:
        return [*lines, "no runs yet"]
    rows = [
        [run["started_at"], run["job_id"] or "-", run["state"], run.get("note") or ""]
        for run in runs
    ]
    return [*lines, "runs (newest first):", table(["STARTED", "JOB", "STATE", "NOTE"], rows)]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


class ProgressBar:
    """Redrawn in place on a terminal; elsewhere (logs, CI) a line every 10% or state change."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._last_state: str | None = None
        self._last_percent = -LOG_STEP_PERCENT
        self._drawn = False

    def update(self, job: JobView) -> None:
        line = progress_line(job)
        if self.live:
            self.stream.write(f"\r{line}\x1b[K")
            self._drawn = True
        elif self._worth_a_line(job):
            self.stream.write(line + "\n")
        self.stream.flush()

    def _worth_a_line(self, job: JobView) -> bool:
        percent = float(job["progress"]["percent"])
        if job["state"] == self._last_state and percent < self._last_percent + LOG_STEP_PERCENT:
            return False
        self._last_state, self._last_percent = job["state"], percent
        return True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class UploadBar:
    """An upload's bytes sent, drawn like the job's bar: in place on a terminal, elsewhere
    a line every 10 % (none for a body too small to take a while)."""

    QUIET_BELOW_BYTES = 1024**2  # off a terminal

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.live = stream.isatty()
        self._shown = -1

    def update(self, sent: int, total: int) -> None:
        if not self.live and total < self.QUIET_BELOW_BYTES:
            return
        percent = 100.0 * sent / total if total else 100.0
        step = int(percent if self.live else percent // LOG_STEP_PERCENT)
        if step == self._shown:
            return
        self._shown = step
        filled = int(BAR_WIDTH * percent / 100)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        line = f"[{bar}] {percent:5.1f}%  {mib(sent)}/{mib(total)} MiB  uploading {self.name}"
        self.stream.write(f"\r{line}\x1b[K" if self.live else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live and self._shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def mib(count: int) -> str:
    return f"{count / 1024**2:.1f}"
