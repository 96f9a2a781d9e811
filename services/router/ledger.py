"""The router's writes to the status store: lead outcomes, progress, job completion.

`record_events` runs a whole batch of events in one transaction. A lead is inserted
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
from services.router.usage import UsageBook, provider_metrics
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
from shared.store import (
    ROWS_PER_STATEMENT,
    JobSpecs,
    epoch_s,
    insert_rows,
    lock_jobs,
    utc_now,
)

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
    conn: Connection,
    events: Sequence[Message],
    enrich_batch_size: int = 25,
    specs: JobSpecs | None = None,
) -> Recorded:
    """Store a batch of events, in the caller's transaction (`enrich_batch_size`: leads per
    enrich task the router starts, for saved searches' runs of new leads only).

    A job's lead outcomes are gathered across the batch and inserted in few statements,
    its progress moved once, usage added up and written once: a few statements per job
    and batch, not a few per lead. Any other event of a job first records the outcomes
    that came before it, so each event still finds the job as the events before left it."""
    # Seq numbers of a job's leads must become visible in order (see lock_job_leads).
    batch = _Batch(conn, enrich_batch_size, lock_jobs(conn, (event.job_id for event in events)))
    for event in events:
        batch.add(event)
    return batch.finish(specs if specs is not None else JobSpecs())


class _Batch:
    def __init__(self, conn: Connection, enrich_batch_size: int, states: dict[str, str]) -> None:
        self.conn = conn
        self.enrich_batch_size = enrich_batch_size
        self.recorded = Recorded()
        self.usage = UsageBook()
        # The states of the batch's jobs, followed as this transaction changes them.
        self.states = states
        # Outcomes of a job not recorded yet: its tenant and leads.
        self.gathered: dict[str, tuple[str, list[ResultLead]]] = {}

    def add(self, event: Message) -> None:
        job_id = event.job_id
        states = self.states
        if job_id not in states:
            log.warning("event.unknown_job", job_id=job_id, type=tag_of(event))
            return
        self.recorded.touched.add(job_id)
        if isinstance(event, LeadOutcomes | UsageRecorded):
            # Paid calls are metered whatever became of the job since (once per event).
            self.usage.add(event.tenant, provider_metrics(event.provider_calls), event.event_id)
        if isinstance(event, LeadOutcomes) and states[job_id] not in jobstate.STOPPED:
            self.gathered.setdefault(job_id, (event.tenant, []))[1].extend(event.leads)
        elif not isinstance(event, UsageRecorded):
            self.flush(job_id)
            self.apply(event, states)

    def apply(self, event: Message, states: dict[str, str]) -> None:
        """An event other than outcomes of a job that takes them."""
        conn, job_id, state = self.conn, event.job_id, states[event.job_id]
        if isinstance(event, JobFailed):
            if jobstate.stop(conn, job_id, jobstate.FAILED, event.reason):
                states[job_id] = jobstate.FAILED
            # Broadcast even if an earlier delivery stopped the job: its broadcast may have
            # been lost between that commit and the publish.
            stop = JobStopped(
                job_id=job_id, tenant=event.tenant, state="failed", reason=event.reason
            )
            self.recorded.outgoing.append(Publish(stop))
        elif state in jobstate.STOPPED:
            # Its counts stay as they were when it stopped, but for replayed leads.
            if isinstance(event, LeadOutcomes):
                self.recorded.outcomes += record_replayed(conn, event, self.usage)
        elif isinstance(event, LeadsScraped):
            if event.only_new:
                event, enrich = keep_new_leads(conn, event, self.enrich_batch_size)
                self.recorded.outgoing.extend(enrich)
            self.recorded.outcomes += record_scraped(conn, event, self.usage)
            states[job_id] = job_state(conn, job_id) or state
        elif isinstance(event, JobCoolingDown):
            conn.execute(
                "UPDATE jobs SET cooling_down_until = ? WHERE job_id = ?", (event.until, job_id)
            )

    def flush(self, job_id: str) -> None:
        """Record the job's gathered outcomes."""
        gathered = self.gathered.pop(job_id, None)
        if gathered is None:
            return
        tenant, leads = gathered
        state = self.states[job_id]
        added, upgraded = insert_leads(
            self.conn, job_id, leads, accept_new=state not in jobstate.TERMINAL
        )
        if added or upgraded:
            self.states[job_id] = advance_progress(self.conn, job_id, added, upgraded, state)
        # Counted as leads become enriched, so a redelivered event counts nothing again.
        self.usage.add(tenant, {"leads_enriched": added["enriched"] + upgraded})
        self.recorded.outcomes += added
        if upgraded:
            self.recorded.rewrites.add(job_id)

    def finish(self, specs: JobSpecs) -> Recorded:
        for job_id in list(self.gathered):
            self.flush(job_id)
        self.usage.record(self.conn)
        for job_id in sorted(self.recorded.touched):
            cut_webhook_batches(self.conn, job_id, specs, self.states[job_id])
        return self.recorded


def job_state(conn: Connection, job_id: str) -> str | None:
    row = conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def record_replayed(conn: Connection, event: LeadOutcomes, usage: UsageBook) -> Counter[str]:
    """The outcomes of a stopped job's leads that were replayed from its dead letters."""
    replayed = replayed_lead_ids(conn, event.job_id)
    leads = [lead for lead in event.leads if lead.id in replayed]
    if not leads:
        return Counter()
    added, upgraded = insert_leads(conn, event.job_id, leads, accept_new=True)
    if added or upgraded:
        state = job_state(conn, event.job_id) or ""
        advance_progress(conn, event.job_id, added, upgraded, state)
        log.info(
            "job.replayed_outcomes_recorded",
            job_id=event.job_id,
            added=sum(added.values()),
            upgraded=upgraded,
        )
    usage.add(event.tenant, {"leads_enriched": added["enriched"] + upgraded})
    return added


def replayed_lead_ids(conn: Connection, job_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT lead_ids FROM dead_letters WHERE job_id = ? AND state = 'replayed'", (job_id,)
    )
    return {lead_id for row in rows for lead_id in _decode_ids(row[0])}


def record_scraped(conn: Connection, event: LeadsScraped, usage: UsageBook) -> Counter[str]:
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
        usage.add(event.tenant, {"pages_scraped": 1, "leads_scraped": new_leads})
        if not event.enrich:  # the scraped leads are the job's results
            results = [
                ResultLead(**msgspec.structs.asdict(lead), status="scraped") for lead in event.leads
            ]
            added, _ = insert_leads(conn, event.job_id, results, accept_new=True)
            advance_progress(conn, event.job_id, added, 0, jobstate.RUNNING)
    if event.final:
        # The scraper's count includes repeats; the job's total is its distinct leads.
        conn.execute("UPDATE jobs SET total = scraped WHERE job_id = ?", (event.job_id,))
        jobstate.complete_if_done(conn, event.job_id)
    return added


def insert_leads(
    conn: Connection, job_id: str, leads: Sequence[ResultLead], *, accept_new: bool
) -> tuple[Counter[str], int]:
    """Insert new outcomes; replace a failed one by an enriched one (a replayed lead).

    Returns the new outcomes by status and how many failed leads became enriched. A lead
    given twice counts once: its first outcome is inserted, and a later enriched one
    replaces it if it was failed, as if each had come in a transaction of its own."""
    added: Counter[str] = Counter()
    now = epoch_s()  # when the outcome came (daily summaries, throughput)
    first: dict[str, ResultLead] = {}
    enriched_again: dict[str, ResultLead] = {}
    for lead in leads:
        if lead.id not in first:
            first[lead.id] = lead
        elif lead.status == "enriched":
            enriched_again.setdefault(lead.id, lead)
    inserted: set[str] = set()
    if accept_new and first:
        rows = [(job_id, lead.id, lead.status, _encode(lead), now) for lead in first.values()]
        returned = insert_rows(
            conn, INSERT_LEAD, rows, "ON CONFLICT DO NOTHING RETURNING lead_id", types=LEAD_TYPES
        )
        inserted = {str(row[0]) for row in returned}
        added.update(first[lead_id].status for lead_id in inserted)
    upgrades = {
        lead_id: lead
        for lead_id, lead in first.items()
        if lead.status == "enriched" and lead_id not in inserted
    }
    for lead_id, lead in enriched_again.items():
        upgrades.setdefault(lead_id, lead)
    upgraded = replace_failed(conn, job_id, upgrades, now) if upgrades else 0
    return +added, upgraded


INSERT_LEAD = "INSERT INTO leads (job_id, lead_id, status, data, outcome_at)"
LEAD_TYPES = ("text", "text", "text", "bytea", "float8")


def replace_failed(conn: Connection, job_id: str, leads: dict[str, ResultLead], now: float) -> int:
    """Replace the failed outcomes of these leads by theirs; how many there were."""
    # Delete and insert rather than update: the lead gets a new seq, so the webhook
    # batching sees it as a new result and sends it again.
    ids = list(leads)
    deleted: list[str] = []
    for start in range(0, len(ids), ROWS_PER_STATEMENT):
        chunk = ids[start : start + ROWS_PER_STATEMENT]
        marks = ", ".join("?" * len(chunk))
        deleted.extend(
            str(row[0])
            for row in conn.execute(
                "DELETE FROM leads WHERE job_id = ? AND status = 'failed'"
                f" AND lead_id IN ({marks}) RETURNING lead_id",
                (job_id, *chunk),
            ).fetchall()
        )
    if deleted:
        gone = set(deleted)
        rows = [
            (job_id, lead_id, lead.status, _encode(lead), now)
            for lead_id, lead in leads.items()
            if lead_id in gone
        ]
        insert_rows(conn, INSERT_LEAD, rows, types=LEAD_TYPES)
    return len(deleted)


def advance_progress(
    conn: Connection, job_id: str, added: Counter[str], upgraded: int, state: str
) -> str:
    """Move the job's counts by these outcomes; returns its state after (from `state`)."""
    now = utc_now()
    count = sum(added.values())
    ((done, total),) = conn.execute(
        "UPDATE jobs SET done = done + ?, enriched = enriched + ?, failed = failed + ?,"
        " started_at = COALESCE(started_at, ?), progress_at = ?, stalled = 0, stall_reason = NULL"
        " WHERE job_id = ? RETURNING done, total",
        (count, added["enriched"] + upgraded, added["failed"] - upgraded, now, epoch_s(), job_id),
    ).fetchall()
    # The state moves are asked for only when they can happen (`state` is the job's in
    # this transaction): two statements fewer per job and batch.
    if state != jobstate.RUNNING and jobstate.mark_running(conn, job_id):
        state = jobstate.RUNNING
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
    if total is not None and done >= total and jobstate.complete_if_done(conn, job_id):
        state = jobstate.COMPLETED
    return state


def cut_webhook_batches(
    conn: Connection, job_id: str, specs: JobSpecs | None = None, state: str | None = None
) -> None:
    """Cut the job's new results into webhook batches (`state`: the job's, when known)."""
    spec = (specs if specs is not None else JobSpecs()).get(conn, job_id)
    hooks = [
        (idx, dest)
        for idx, dest in enumerate(spec.destinations if spec is not None else ())
        if isinstance(dest, WebhookDestination)
    ]
    if not hooks:
        return
    if state is None:
        state = job_state(conn, job_id)
    if state is None or state in jobstate.STOPPED:
        return  # a stopped job's destinations get nothing more
    for idx, dest in hooks:
        _cut_batches(conn, job_id, idx, dest.batch_size, flush=state in jobstate.TERMINAL)


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
