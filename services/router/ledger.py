"""The router's writes to the status store: lead outcomes, progress, job completion.

`record_outcomes` runs a whole batch of events in one transaction. A lead is inserted
once per (job_id, lead_id): a redelivered or duplicated event inserts nothing, so counts
move only for leads that are new. Webhook batches are cut in the same transaction, so a
batch always holds leads that are committed, and each lead lands in exactly one batch.

A stopped job (cancelled, timed out, failed) takes no more outcomes, except those of
leads an operator replayed from its dead letters: a replay is an explicit request, so a
lead whose events were parked while the job ended still gets its outcome, and the job's
counts follow. Its state stays terminal and its destinations get nothing more (the
results are in the store and the API).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from services.router.schedules import keep_new_leads
from services.router.usage import add_usage, provider_metrics
from shared import jobstate
from shared.broker import Outgoing, Publish
from shared.dbapi import Connection
from shared.jobs import WebhookDestination
from shared.logging import get_logger
from shared.messages import (
    JobCoolingDown,
    JobFailed,
    JobStopped,
    LeadOutcomes,
    LeadsScraped,
    Message,
    ResultLead,
    UsageRecorded,
    tag_of,
)
from shared.store import decode_spec, epoch_s, lock_job_leads, utc_now

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode
_decode_ids = msgspec.json.Decoder(list[str]).decode


@dataclass
class Recorded:
    """What a batch of events changed: jobs that may have new results to export, messages
    to publish once the batch is committed, and the new lead outcomes by status."""

    touched: set[str] = field(default_factory=set)
    outgoing: list[Outgoing] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    # Jobs whose CSV is to be written again from the start (a failed lead became enriched:
    # a dead-letter replay). The rewrite waits until the job is quiet, so a replay of many
    # leads, in many batches, rewrites the file once (CsvExporter.catch_up).
    rewrites: set[str] = field(default_factory=set)


def record_events(
    conn: Connection, events: Sequence[Message], enrich_batch_size: int = 25
) -> Recorded:
    """Store a batch of events, in the caller's transaction (`enrich_batch_size`: leads per
    enrich task the router starts, for saved searches' runs of new leads only)."""
    recorded = Recorded()
    touched, outgoing = recorded.touched, recorded.outgoing
    # Seq numbers of a job's leads must become visible in order (see lock_job_leads).
    lock_job_leads(conn, (event.job_id for event in events))
    for event in events:
        state = job_state(conn, event.job_id)
        if state is None:
            log.warning("event.unknown_job", job_id=event.job_id, type=tag_of(event))
            continue
        touched.add(event.job_id)
        if isinstance(event, LeadOutcomes | UsageRecorded):
            # Paid calls are metered whatever became of the job since (once per event).
            add_usage(conn, event.tenant, provider_metrics(event.provider_calls), event.event_id)
        if isinstance(event, JobFailed):
            jobstate.stop(conn, event.job_id, jobstate.FAILED, event.reason)
            # Broadcast even if an earlier delivery stopped the job: its broadcast may have
            # been lost between that commit and the publish.
            stop = JobStopped(
                job_id=event.job_id, tenant=event.tenant, state="failed", reason=event.reason
            )
            outgoing.append(Publish(stop))
            continue
        if state in jobstate.STOPPED:
            # Its counts stay as they were when it stopped, but for replayed leads.
            if isinstance(event, LeadOutcomes):
                recorded.outcomes += record_replayed(conn, event)
            continue
        if isinstance(event, LeadOutcomes):
            added, upgraded = record_outcomes(
                conn, event, accept_new=state not in jobstate.TERMINAL
            )
            recorded.outcomes += added
            if upgraded:
                recorded.rewrites.add(event.job_id)
        elif isinstance(event, LeadsScraped):
            if event.only_new:
                event, enrich = keep_new_leads(conn, event, enrich_batch_size)
                outgoing.extend(enrich)
            recorded.outcomes += record_scraped(conn, event)
        elif isinstance(event, JobCoolingDown):
            conn.execute(
                "UPDATE jobs SET cooling_down_until = ? WHERE job_id = ?",
                (event.until, event.job_id),
            )
    for job_id in touched:
        cut_webhook_batches(conn, job_id)
    return recorded


def job_state(conn: Connection, job_id: str) -> str | None:
    row = conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def record_outcomes(
    conn: Connection, event: LeadOutcomes, *, accept_new: bool
) -> tuple[Counter[str], int]:
    """The new outcomes by status, and how many failed leads became enriched."""
    added, upgraded = insert_leads(conn, event.job_id, event.leads, accept_new=accept_new)
    if added or upgraded:
        advance_progress(conn, event.job_id, added, upgraded)
    # Counted as leads become enriched, so a redelivered event counts nothing again.
    add_usage(conn, event.tenant, {"leads_enriched": added["enriched"] + upgraded})
    return added, upgraded


def record_replayed(conn: Connection, event: LeadOutcomes) -> Counter[str]:
    """The outcomes of a stopped job's leads that were replayed from its dead letters."""
    replayed = replayed_lead_ids(conn, event.job_id)
    leads = [lead for lead in event.leads if lead.id in replayed]
    if not leads:
        return Counter()
    added, upgraded = insert_leads(conn, event.job_id, leads, accept_new=True)
    if added or upgraded:
        advance_progress(conn, event.job_id, added, upgraded)
        log.info(
            "job.replayed_outcomes_recorded",
            job_id=event.job_id,
            added=sum(added.values()),
            upgraded=upgraded,
        )
    add_usage(conn, event.tenant, {"leads_enriched": added["enriched"] + upgraded})
    return added


def replayed_lead_ids(conn: Connection, job_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT lead_ids FROM dead_letters WHERE job_id = ? AND state = 'replayed'", (job_id,)
    )
    return {lead_id for row in rows for lead_id in _decode_ids(row[0])}


def record_scraped(conn: Connection, event: LeadsScraped) -> Counter[str]:
    """A page of a scrape job, counted once per page however often it arrives."""
    added: Counter[str] = Counter()
    new_page = conn.execute(
        "INSERT INTO scrape_pages (job_id, page, leads) VALUES (?, ?, ?)"
        " ON CONFLICT (job_id, page) DO NOTHING",
        (event.job_id, event.page, len(event.leads)),
    ).rowcount
    if new_page:
        # A source may list a person on two pages: the job counts each lead once.
        new_leads = sum(
            conn.execute(
                "INSERT INTO scrape_leads (job_id, lead_id) VALUES (?, ?)"
                " ON CONFLICT (job_id, lead_id) DO NOTHING",
                (event.job_id, lead.id),
            ).rowcount
            for lead in event.leads
        )
        conn.execute(
            "UPDATE jobs SET scraped = scraped + ?, pages = pages + 1, cooling_down_until = NULL,"
            " started_at = COALESCE(started_at, ?), progress_at = ?, stalled = 0,"
            " stall_reason = NULL,"
            " total = CASE WHEN total IS NULL THEN NULL ELSE scraped + ? END WHERE job_id = ?",
            (new_leads, utc_now(), epoch_s(), new_leads, event.job_id),
        )
        jobstate.mark_running(conn, event.job_id)
        add_usage(conn, event.tenant, {"pages_scraped": 1, "leads_scraped": new_leads})
        if not event.enrich:  # the scraped leads are the job's results
            results = [
                ResultLead(**msgspec.structs.asdict(lead), status="scraped") for lead in event.leads
            ]
            added, _ = insert_leads(conn, event.job_id, results, accept_new=True)
            advance_progress(conn, event.job_id, added, 0)
    if event.final:
        # The scraper's count includes repeats; the job's total is its distinct leads.
        conn.execute("UPDATE jobs SET total = scraped WHERE job_id = ?", (event.job_id,))
        jobstate.complete_if_done(conn, event.job_id)
    return added


def insert_leads(
    conn: Connection, job_id: str, leads: Sequence[ResultLead], *, accept_new: bool
) -> tuple[Counter[str], int]:
    """Insert new outcomes; replace a failed one by an enriched one (a replayed lead).

    Returns the new outcomes by status and how many failed leads became enriched."""
    added: Counter[str] = Counter()
    upgraded = 0
    now = epoch_s()  # when the outcome came (daily summaries, throughput)
    for lead in leads:
        row = (job_id, lead.id, lead.status, _encode(lead), now)
        if accept_new and conn.execute(INSERT_LEAD + " ON CONFLICT DO NOTHING", row).rowcount:
            added[lead.status] += 1
        elif lead.status == "enriched" and replace_failed(conn, row):
            upgraded += 1
    return +added, upgraded


INSERT_LEAD = "INSERT INTO leads (job_id, lead_id, status, data, outcome_at) VALUES (?, ?, ?, ?, ?)"


def replace_failed(conn: Connection, row: tuple[str, str, str, bytes, float]) -> bool:
    # Delete and insert rather than update: the lead gets a new seq, so the webhook
    # batching sees it as a new result and sends it again.
    deleted = conn.execute(
        "DELETE FROM leads WHERE job_id = ? AND lead_id = ? AND status = 'failed'", row[:2]
    ).rowcount
    if deleted:
        conn.execute(INSERT_LEAD, row)
    return bool(deleted)


def advance_progress(conn: Connection, job_id: str, added: Counter[str], upgraded: int) -> None:
    now = utc_now()
    count = sum(added.values())
    conn.execute(
        "UPDATE jobs SET done = done + ?, enriched = enriched + ?, failed = failed + ?,"
        " started_at = COALESCE(started_at, ?), progress_at = ?, stalled = 0, stall_reason = NULL"
        " WHERE job_id = ?",
        (count, added["enriched"] + upgraded, added["failed"] - upgraded, now, epoch_s(), job_id),
    )
    jobstate.mark_running(conn, job_id)
    conn.execute(
        "UPDATE destinations SET delivered = delivered + ? WHERE job_id = ? AND type = 'dashboard'",
        (count, job_id),
    )
    if upgraded:
        # A CSV holds each lead once: rewrite it from the store with the new outcomes.
        conn.execute(
            "UPDATE destinations SET cursor_seq = 0, file_offset = 0, delivered = 0"
            " WHERE job_id = ? AND type = 'csv'",
            (job_id,),
        )
    jobstate.complete_if_done(conn, job_id)


def cut_webhook_batches(conn: Connection, job_id: str) -> None:
    job = conn.execute("SELECT state, spec FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if job["state"] in jobstate.STOPPED:
        return  # a stopped job's destinations get nothing more
    finished = job["state"] in jobstate.TERMINAL
    spec = decode_spec(job["spec"])
    for idx, dest in enumerate(spec.destinations):
        if isinstance(dest, WebhookDestination):
            _cut_batches(conn, job_id, idx, dest.batch_size, flush=finished)


def _cut_batches(conn: Connection, job_id: str, idx: int, batch_size: int, *, flush: bool) -> None:
    dest = conn.execute(
        "SELECT cursor_seq FROM destinations WHERE job_id = ? AND idx = ?", (job_id, idx)
    ).fetchone()
    cursor = dest["cursor_seq"]
    batch_no = conn.execute(
        "SELECT COALESCE(MAX(batch_no) + 1, 0) FROM webhook_batches"
        " WHERE job_id = ? AND dest_idx = ?",
        (job_id, idx),
    ).fetchone()[0]
    now = epoch_s()
    while True:
        seqs = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM leads WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, cursor, batch_size),
            )
        ]
        if not seqs or (len(seqs) < batch_size and not flush):
            break
        conn.execute(
            "INSERT INTO webhook_batches (job_id, dest_idx, batch_no, webhook_id, first_seq,"
            " last_seq, size, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                idx,
                batch_no,
                f"msg_{job_id}_{idx}_{batch_no}",
                seqs[0],
                seqs[-1],
                len(seqs),
                now,
                now,
            ),
        )
        cursor = seqs[-1]
        batch_no += 1
    conn.execute(
        "UPDATE destinations SET cursor_seq = ? WHERE job_id = ? AND idx = ?", (cursor, job_id, idx)
    )
