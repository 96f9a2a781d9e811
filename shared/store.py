"""The status store: jobs, per-lead results and delivery bookkeeping in SQLite (WAL mode).

One `Store` per process. Every statement runs on one dedicated thread, so the event loop
never blocks on disk and the connection is never shared between threads. Services keep
their own SQL next to their logic and run it through `Store.run` / `Store.transaction`;
this module owns the schema and the reads more than one service needs.

Several processes on one machine share the file: the gateway creates jobs, the router is
the single writer of their progress. WAL lets readers run beside that writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from shared.jobs import (
    DestinationStatus,
    JobSpec,
    JobStatus,
    Progress,
    percent,
)
from shared.messages import Lead

T = TypeVar("T")

# Each entry upgrades the schema by one version; never edit an entry once it has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    priority TEXT NOT NULL,
    total INTEGER,
    done INTEGER NOT NULL DEFAULT 0,
    enriched INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    timeout_s INTEGER,
    depends_on TEXT,
    spec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, seq);

CREATE TABLE IF NOT EXISTS leads (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    status TEXT NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (job_id, lead_id)
);
CREATE INDEX IF NOT EXISTS leads_by_job ON leads (job_id, seq);

CREATE TABLE IF NOT EXISTS destinations (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    type TEXT NOT NULL,
    name TEXT,
    cursor_seq INTEGER NOT NULL DEFAULT 0,
    file_offset INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE IF NOT EXISTS webhook_batches (
    job_id TEXT NOT NULL,
    dest_idx INTEGER NOT NULL,
    batch_no INTEGER NOT NULL,
    webhook_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (job_id, dest_idx, batch_no)
);
CREATE INDEX IF NOT EXISTS webhook_batches_due ON webhook_batches (state, next_attempt_at);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
);
""",
    """
ALTER TABLE jobs ADD COLUMN progress_at REAL;
ALTER TABLE jobs ADD COLUMN stalled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stall_reason TEXT;
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);

CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    tenant TEXT,
    job_id TEXT,
    message_type TEXT,
    lead_ids BLOB NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    history BLOB NOT NULL,
    body BLOB NOT NULL,
    dead_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'parked',
    replayed_at TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_tenant ON dead_letters (tenant, id);
""",
    """
ALTER TABLE jobs ADD COLUMN deadline_at REAL;
CREATE TABLE IF NOT EXISTS alerts (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (job_id, kind)
);
""",
    """
ALTER TABLE jobs ADD COLUMN scraped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN pages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cooling_down_until REAL;
ALTER TABLE jobs ADD COLUMN charged INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS jobs_by_dependency ON jobs (depends_on);
CREATE TABLE IF NOT EXISTS scrape_pages (
    job_id TEXT NOT NULL,
    page INTEGER NOT NULL,
    leads INTEGER NOT NULL,
    PRIMARY KEY (job_id, page)
);
CREATE TABLE IF NOT EXISTS deferred_leads (
    job_id TEXT PRIMARY KEY,
    leads BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    metric TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, metric)
);
CREATE TABLE IF NOT EXISTS usage_events (
    event_id TEXT PRIMARY KEY,
    day TEXT NOT NULL
);
""",
    """
CREATE TABLE IF NOT EXISTS quota_charges (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    job_id TEXT NOT NULL,
    leads INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, job_id)
);
CREATE TABLE IF NOT EXISTS scrape_leads (
    job_id TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    PRIMARY KEY (job_id, lead_id)
);
CREATE TABLE IF NOT EXISTS upkeep_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_job ON dead_letters (job_id);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_job ON idempotency_keys (job_id);
CREATE INDEX IF NOT EXISTS jobs_by_tenant_created ON jobs (tenant, created_at);
CREATE INDEX IF NOT EXISTS jobs_stalled ON jobs (stalled) WHERE stalled = 1;
CREATE INDEX IF NOT EXISTS usage_events_by_day ON usage_events (day);
CREATE INDEX IF NOT EXISTS destinations_by_csv_name ON destinations (name) WHERE type = 'csv';
CREATE INDEX IF NOT EXISTS destinations_given_up ON destinations (job_id) WHERE failed > 0;
""",
)

JOB_COLUMNS = (
    "job_id, kind, state, priority, total, done, enriched, failed, created_at, started_at, "
    "finished_at, error, timeout_s, depends_on, stalled, stall_reason, scraped, pages,"
    " cooling_down_until"
)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_s() -> float:
    return time.time()


class Store:
    """An SQLite database used from one worker thread."""

    def __init__(
        self, path: Path, migrations: tuple[str, ...] = MIGRATIONS, *, durable: bool = True
    ) -> None:
        self.path = path
        self._migrations = migrations
        self._durable = durable
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.run(lambda _: None)

    async def close(self) -> None:
        await self.run(lambda _: self._close())
        self._executor.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the store thread (autocommit unless it opens a transaction)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a small indexed read on the caller's thread, on a connection of its own.

        For reads of a row or two that the hot path serves often (a job's status): a hop
        to the store thread costs more than the read itself. WAL readers never wait for the
        writer, so this does not block the event loop behind a write."""
        if self._reader is None:
            self._reader = connect(self.path, (), durable=self._durable)
        return fn(self._reader)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` inside one write transaction on the store thread."""

        def in_transaction(conn: sqlite3.Connection) -> T:
            with write_transaction(conn):
                return fn(conn)

        return await self.run(in_transaction)

    async def check_writable(self) -> None:
        """Raise unless a write lock can be taken (readiness)."""

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")

        await self.run(probe)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = connect(self.path, self._migrations, durable=self._durable)
        return fn(self._conn)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def connect(
    path: Path, migrations: tuple[str, ...] = MIGRATIONS, *, durable: bool = True
) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed lead survives power loss too, and commits are per batch anyway.
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    if migrations:
        migrate(conn, migrations)
    return conn


def migrate(conn: sqlite3.Connection, migrations: tuple[str, ...]) -> None:
    with write_transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(migrations[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
    # instead of failing with "database is locked" when a read upgrades to a write.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


IDEMPOTENCY_TTL_S = 24 * 3600  # how long a repeated Idempotency-Key returns the first job
# Stopped before the end: the counts stay where they were and destinations get no more.
STOPPED_STATES = frozenset({"cancelled", "timed_out", "failed"})


def stop_job(conn: sqlite3.Connection, job_id: str, state: str, reason: str) -> bool:
    """Move an unfinished job to a terminal `state`; False if it had already finished."""
    stopped = conn.execute(
        "UPDATE jobs SET state = ?, error = ?, finished_at = ?, stalled = 0, stall_reason = NULL"
        " WHERE job_id = ? AND state IN ('queued', 'waiting', 'running')",
        (state, reason, utc_now(), job_id),
    ).rowcount
    if stopped:
        conn.execute(
            "UPDATE webhook_batches SET state = 'cancelled' WHERE job_id = ? AND state = 'pending'",
            (job_id,),
        )
    return bool(stopped)


def job_result_leads(conn: sqlite3.Connection, job_id: str) -> list[Lead]:
    """A job's successful results as input leads (what a dependent job takes)."""
    rows = conn.execute(
        "SELECT data FROM leads WHERE job_id = ? AND status IN ('scraped', 'enriched')"
        " ORDER BY seq",
        (job_id,),
    ).fetchall()
    return [_lead_from_result(row[0]) for row in rows]


_lead_from_result = msgspec.json.Decoder(Lead).decode  # Lead ignores the result-only fields


def csv_owner(conn: sqlite3.Connection, tenant: str, file_name: str) -> str | None:
    """The job a tenant's CSV file belongs to: the newest one that writes it. A file name
    is taken over by a later job; the earlier one no longer writes, rewrites or deletes it."""
    row = conn.execute(
        "SELECT j.job_id FROM destinations d JOIN jobs j ON j.job_id = d.job_id"
        " WHERE j.tenant = ? AND d.type = 'csv' AND d.name = ? ORDER BY j.seq DESC LIMIT 1",
        (tenant, file_name),
    ).fetchone()
    return None if row is None else str(row[0])


def delete_job(conn: sqlite3.Connection, job_id: str) -> list[tuple[str, str]]:
    """Remove a job and everything about it; returns the CSV exports it owned as
    (tenant, file name)."""
    job = conn.execute("SELECT tenant FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if job is None:
        return []
    exports = [
        (job["tenant"], row["name"])
        for row in conn.execute(
            "SELECT name FROM destinations WHERE job_id = ? AND type = 'csv'", (job_id,)
        )
        if csv_owner(conn, job["tenant"], row["name"]) == job_id
    ]
    for table in (
        "leads",
        "destinations",
        "webhook_batches",
        "dead_letters",
        "alerts",
        "idempotency_keys",
        "scrape_pages",
        "scrape_leads",
        "deferred_leads",
        "jobs",
    ):
        conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
    return exports


_spec_decoder = msgspec.json.Decoder(JobSpec)


def decode_spec(raw: bytes) -> JobSpec:
    return _spec_decoder.decode(raw)


def job_status(conn: sqlite3.Connection, row: sqlite3.Row) -> JobStatus:
    dests = conn.execute(
        "SELECT type, name, delivered, failed, last_error FROM destinations"
        " WHERE job_id = ? ORDER BY idx",
        (row["job_id"],),
    ).fetchall()
    return JobStatus(
        job_id=row["job_id"],
        kind=row["kind"],
        state=row["state"],
        priority=row["priority"],
        progress=Progress(
            total=row["total"],
            done=row["done"],
            enriched=row["enriched"],
            failed=row["failed"],
            percent=percent(row["done"], row["total"]),
            scraped=row["scraped"] if row["kind"] == "scrape" else None,
            pages=row["pages"] if row["kind"] == "scrape" else None,
        ),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        destinations=[
            DestinationStatus(
                type=d["type"],
                name=d["name"],
                delivered=d["delivered"],
                failed=d["failed"],
                pending=0
                if row["state"] in STOPPED_STATES
                else max(0, row["done"] - d["delivered"] - d["failed"]),
                last_error=d["last_error"],
            )
            for d in dests
        ],
        depends_on=row["depends_on"],
        timeout_s=row["timeout_s"],
        stalled=bool(row["stalled"]),
        stall_reason=row["stall_reason"],
        cooling_down_until=iso(row["cooling_down_until"]),
    )


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def fetch_job_row(conn: sqlite3.Connection, job_id: str, tenant: str | None) -> Any:
    sql = f"SELECT seq, tenant, {JOB_COLUMNS} FROM jobs WHERE job_id = ?"
    params: tuple[str, ...] = (job_id,)
    if tenant is not None:
        sql += " AND tenant = ?"
        params = (job_id, tenant)
    return conn.execute(sql, params).fetchone()
