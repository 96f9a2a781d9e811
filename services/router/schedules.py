"""Saved searches, the router's side: running each schedule when it is due, and keeping a run
that delivers only new leads to those.

The scheduler is an upkeep duty, so only the router holding the upkeep lease runs it. A slot
is still claimed with a conditional update of the schedule's `next_run_at` (from the value
read to the next slot), in the same transaction that records the run and its job: should two
routers ever both believe they hold the lease, one slot still makes one run. The next slot is
the first after now (shared/schedules.py), so a router that was down over several slots runs
a schedule once. A slot whose previous run is still going is skipped, with a note saying so.

A run's job is submitted exactly as `POST /v1/jobs/scrape` submits one (services/gateway's
`scrape_job` and `JobSubmitter`): the same quota, lanes, confirms and failure handling. A
refusal (daily quota, a CSV file still being written) skips the slot with the reason.

With `only_new`, the scraper leaves a run's pages to the router: `keep_new_leads` drops the
leads an earlier run of the schedule delivered (by the source's lead id) before they are
counted, stored or delivered, and starts enrichment for the others only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import msgspec

from services.gateway.errors import DomainError
from services.gateway.newjobs import scrape_job
from services.gateway.schemas import ScrapeJobRequest
from services.gateway.submit import JobSubmitter
from shared import jobstate
from shared.broker import Outgoing
from shared.dbapi import Connection
from shared.logging import get_logger
from shared.messages import LeadsScraped
from shared.schedules import next_run_after
from shared.secretbox import SecretBox
from shared.store import Store, epoch_s
from shared.tasks import enrich_tasks

log = get_logger(__name__)
_decode_job = msgspec.json.Decoder(ScrapeJobRequest).decode
_decode_sealed = msgspec.json.Decoder(dict[int, str]).decode
DUE_PER_ROUND = 50


@dataclass(frozen=True)
class RunDefaults:
    """What a run's job takes from settings when its body does not say (as the gateway's)."""

    default_timeout_s: int
    secret_box: SecretBox


@dataclass(frozen=True)
class Due:
    schedule_id: str
    tenant: str
    slot_at: float  # the `next_run_at` read: the claim holds only while it is unchanged
    next_at: float
    only_new: bool
    job: bytes
    sealed_secrets: bytes


class SlotTaken(Exception):
    """Another scheduler claimed the slot first (or the schedule was deleted)."""


class Scheduler:
    def __init__(self, store: Store, submitter: JobSubmitter, defaults: RunDefaults) -> None:
        self.store = store
        self.submitter = submitter
        self.defaults = defaults

    async def check(self) -> None:
        now = epoch_s()
        for due in await self.store.run(lambda conn: due_schedules(conn, now)):
            await self.run(due)

    async def run(self, due: Due) -> None:
        busy = await self.store.transaction(lambda conn: skip_if_busy(conn, due))
        if busy is not None:
            log.info("schedule.skipped", schedule_id=due.schedule_id, reason=busy)
            return
        request = _decode_job(due.job)
        job = scrape_job(request, due.tenant, self.defaults, only_new=due.only_new)
        job = replace(
            job,
            sealed_secrets=_decode_sealed(due.sealed_secrets),
            record_with=lambda conn, job_id: claim(conn, due, job_id, None),
        )
        try:
            submitted = await self.submitter.submit(due.tenant, job, None, due.job)
        except SlotTaken:
            return
        except DomainError as e:  # refused as a POST would be: the slot is skipped
            note = f"not run: {e}"
            try:
                await self.store.transaction(lambda conn: claim(conn, due, None, note))
            except SlotTaken:
                return
            log.warning("schedule.refused", schedule_id=due.schedule_id, reason=str(e))
            return
        log.info(
            "schedule.ran",
            schedule_id=due.schedule_id,
            job_id=submitted.job_id,
            state=submitted.state,
        )


def due_schedules(conn: Connection, now: float) -> list[Due]:
    rows = conn.execute(
        "SELECT schedule_id, tenant, every_s, cron, only_new, job, sealed_secrets, created_at,"
        " next_run_at FROM schedules WHERE next_run_at <= ? ORDER BY next_run_at LIMIT ?",
        (now, DUE_PER_ROUND),
    ).fetchall()
    return [
        Due(
            schedule_id=row["schedule_id"],
            tenant=row["tenant"],
            slot_at=row["next_run_at"],
            next_at=next_run_after(
                now, created_at=row["created_at"], every_s=row["every_s"], cron=row["cron"]
            ),
            only_new=bool(row["only_new"]),
            job=bytes(row["job"]),
            sealed_secrets=bytes(row["sealed_secrets"]),
        )
        for row in rows
    ]


def skip_if_busy(conn: Connection, due: Due) -> str | None:
    """When the schedule's previous run is still going, skip this slot (claimed, with a note
    on the run) and say why; otherwise None."""
    running = conn.execute(
        "SELECT r.job_id FROM schedule_runs r JOIN jobs j ON j.job_id = r.job_id"
        f" WHERE r.schedule_id = ? AND {jobstate.state_in(jobstate.UNFINISHED, 'j.state')}"
        " ORDER BY r.started_at DESC LIMIT 1",
        (due.schedule_id,),
    ).fetchone()
    if running is None:
        return None
    note = f"skipped: the previous run (job {running[0]}) is still going"
    try:
        claim(conn, due, None, note)
    except SlotTaken:
        return "taken"
    return note


def claim(conn: Connection, due: Due, job_id: str | None, note: str | None) -> None:
    """Move the schedule to its next slot if it is still at the one read, and record the run
    (its job, or none and why); SlotTaken otherwise, rolling the transaction back."""
    moved = conn.execute(
        "UPDATE schedules SET next_run_at = ? WHERE schedule_id = ? AND next_run_at = ?",
        (due.next_at, due.schedule_id, due.slot_at),
    ).rowcount
    if not moved:
        raise SlotTaken(due.schedule_id)
    conn.execute(
        "INSERT INTO schedule_runs (run_id, schedule_id, slot_at, started_at, job_id, note)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (uuid.uuid4().hex, due.schedule_id, due.slot_at, epoch_s(), job_id, note),
    )


def keep_new_leads(
    conn: Connection, event: LeadsScraped, enrich_batch_size: int
) -> tuple[LeadsScraped, list[Outgoing]]:
    """The page without the leads an earlier run of the job's schedule delivered, and the
    enrich tasks of the rest. Those are sent again when the page is redelivered (the
    publish after an earlier try may have been lost); the leads are kept as this run's,
    so a redelivered page keeps the same leads."""
    run = conn.execute(
        "SELECT r.schedule_id, j.priority FROM schedule_runs r JOIN jobs j ON j.job_id = r.job_id"
        " WHERE r.job_id = ?",
        (event.job_id,),
    ).fetchone()
    new = event.leads
    if run is not None and new:
        earlier = delivered_before(conn, run["schedule_id"], event.job_id, [x.id for x in new])
        new = [lead for lead in new if lead.id not in earlier]
        conn.executemany(
            "INSERT INTO schedule_leads (schedule_id, lead_id, job_id) VALUES (?, ?, ?)"
            " ON CONFLICT (schedule_id, lead_id) DO UPDATE SET job_id = excluded.job_id",
            [(run["schedule_id"], lead.id, event.job_id) for lead in new],
        )
        if len(new) < len(event.leads):
            log.info(
                "schedule.leads_seen_before",
                job_id=event.job_id,
                page=event.page,
                dropped=len(event.leads) - len(new),
            )
    page = msgspec.structs.replace(event, leads=new)
    if not event.enrich or not new:
        return page, []
    priority = run["priority"] if run is not None else "normal"
    return page, enrich_tasks(event.job_id, event.tenant, new, enrich_batch_size, priority)


def delivered_before(
    conn: Connection, schedule_id: str, job_id: str, lead_ids: Sequence[str]
) -> set[str]:
    """Of `lead_ids`, those another run of the schedule took and delivered (a run that was
    cancelled, failed or timed out did not deliver them: they count as new again)."""
    marks = ",".join("?" * len(lead_ids))
    rows = conn.execute(
        "SELECT s.lead_id, s.job_id, j.state FROM schedule_leads s"
        " LEFT JOIN jobs j ON j.job_id = s.job_id"
        f" WHERE s.schedule_id = ? AND s.lead_id IN ({marks})",
        (schedule_id, *lead_ids),
    ).fetchall()
    return {
        row["lead_id"]
        for row in rows
        if row["job_id"] != job_id and row["state"] not in jobstate.STOPPED
    }
