"""The status store: jobs, per-lead results and delivery bookkeeping, in SQLite (WAL
mode; the embedded default) or PostgreSQL (`LEADFLOW_STORE_URL=postgresql://…`, several
machines).

One `Store` per process. Every statement runs on one dedicated thread, so the event loop
never blocks on the database and the connection is never shared between threads. Services
keep their own SQL next to their logic and run it through `Store.run` / `Store.transaction`;
this module applies the schema (the versioned files in shared/migrations/) and owns the
reads more than one service needs. A job's state changes only through shared/jobstate.py.

Several processes share the database: the gateways create jobs, the active router writes
their progress. On SQLite one write lock serialises every write transaction. On
PostgreSQL `Store.transaction` runs SERIALIZABLE and is run again after a serialization
failure or a deadlock, so each transaction still behaves as if it ran alone: the
check-then-write steps written for SQLite (an idempotency key, the daily quota, a CSV
name claim, a dead letter's replay, a webhook batch's lease) stay correct across machines
without a lock of their own. What SERIALIZABLE does not give — the order in which lead
and job `seq` numbers become visible — `lock_job_leads` and `lock_job_seq` do. The
dialect differences live in shared/pgstore.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psycopg

from shared import pgstore

# Re-exported: the store's time formats, which most callers import from here.
from shared.clock import epoch_s as epoch_s
from shared.clock import iso as iso
from shared.clock import utc_now as utc_now
from shared.dbapi import Connection, Row
from shared.errors import StoreUnavailable
from shared.jobs import (
    DestinationStatus,
    JobSpec,
    JobStatus,
    Progress,
    percent,
)
from shared.jobstate import STOPPED
from shared.logging import get_logger
from shared.messages import Lead
from shared.supervise import compute_backoff

T = TypeVar("T")
log = get_logger(__name__)

# Migrations are versioned files (`migrations/NNNN_what.sql`), applied in order by number
# at connect; `PRAGMA user_version` (SQLite) or the `schema_versions` row of the component
# (PostgreSQL) records how many ran. Add a new file, never edit one that has shipped; its
# dialect is described in shared/migrations/README.md.
MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def load_migrations(package: str, folder: str = "migrations") -> tuple[str, ...]:
    """The migration scripts shipped in `package`'s `folder`, in version order.

    Files are numbered from 0001 without gaps, so a missing or doubled file stops the
    process at start instead of leaving a store at a version it never reached."""
    scripts: dict[int, str] = {}
    for entry in resources.files(package).joinpath(folder).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = MIGRATION_NAME.fullmatch(entry.name)
        if match is None:
            raise ValueError(f"migration {entry.name} is not named NNNN_what.sql")
        number = int(match[1])
        if number in scripts:
            raise ValueError(f"two migrations are numbered {number:04d} in {package}/{folder}")
        scripts[number] = entry.read_text(encoding="utf-8")
    if sorted(scripts) != list(range(1, len(scripts) + 1)):
        raise ValueError(f"migrations in {package}/{folder} must be numbered 0001 on, no gaps")
    return tuple(scripts[number] for number in sorted(scripts))


def statements(script: str) -> list[str]:
    """A migration's statements: split at `;`, so no literal in a migration holds one.
    Comment lines go first, so a comment may say anything."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [statement for statement in code.split(";") if statement.strip()]


MIGRATIONS = load_migrations("shared")

JOB_COLUMNS = (
    "job_id, kind, state, priority, total, done, enriched, failed, created_at, started_at, "
    "finished_at, error, timeout_s, depends_on, stalled, stall_reason, scraped, pages,"
    " cooling_down_until, max_credits, paused_reason,"
    " COALESCE((SELECT c.credits FROM job_credits c WHERE c.job_id = jobs.job_id), 0) AS credits"
)


# A writer waits this long for another one's lock before the store counts as unavailable:
# far longer than any transaction here holds it, and short, because the wait blocks the
# store thread and everything queued behind it (upkeep, webhooks, readiness). Past it,
# callers wait the outage out (the router holds its batch) or answer 503 (the gateway).
# A blocked writer takes a released lock at once.
BUSY_TIMEOUT_S = 10.0
# How long a starting service waits for a locked store before it gives up (and exits).
OPEN_WAIT_S = 120.0
# Readiness probes wait for the lock this long only, so they hold the store thread little.
PROBE_BUSY_TIMEOUT_S = 1.0
# Reads on the event loop's thread (`read_now`) must never hold the loop that long; WAL
# readers rarely wait at all.
READ_BUSY_TIMEOUT_S = 1.0
# Primary SQLite result codes that mean the store, not the statement, is the problem:
# BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
# A constraint, a type mismatch or an SQL error (SQLITE_ERROR) is a bug or bad data.
UNAVAILABLE_CODES = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15, 26})
UNAVAILABLE_TEXTS = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "unable to open",
    "database or disk is full",
    "readonly database",
    "disk image is malformed",
    "file is not a database",
    "out of memory",
)
# Any error a database driver raises (callers that must not let one escape).
StoreError = (sqlite3.Error, psycopg.Error)
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A transaction that lost a serialization race is run again this many times (each with a
# short random pause), then the store counts as unavailable, as with a lock held too long.
SERIALIZATION_RETRIES = 30
NOT_INFRASTRUCTURE = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
)
# Outages that ended longer ago than this are not applied to deadlines any more (a
# standby router that only takes over the upkeep later must not apply them again).
OUTAGE_KEPT_S = 300.0


def unavailable(error: BaseException) -> StoreUnavailable | None:
    """The `StoreUnavailable` that `error` means, or None when it is not store trouble."""
    if isinstance(error, StoreUnavailable):
        return error
    if isinstance(error, psycopg.Error):
        return pgstore.unavailable(error)
    if not isinstance(error, sqlite3.DatabaseError) or isinstance(error, NOT_INFRASTRUCTURE):
        return None
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        infrastructure = code & 0xFF in UNAVAILABLE_CODES
    else:
        infrastructure = any(text in str(error).lower() for text in UNAVAILABLE_TEXTS)
    if not infrastructure:
        return None
    found = StoreUnavailable(f"store unavailable: {error}")
    found.__cause__ = error
    return found


def is_postgres_url(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///path` URL (`sqlite:////abs` or `sqlite:///rel`)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite:/// URL: {url!r}")
    return Path(url.removeprefix("sqlite:///"))


class Store:
    """A database used from one worker thread: an SQLite file (`target` a Path or a
    `sqlite:///` URL) or PostgreSQL (a `postgresql://` URL).

    Store trouble (see `unavailable`) is raised as `StoreUnavailable`; the store then
    counts as unavailable until a write (a statement that changed a row) is committed
    again, whatever reads succeed meanwhile, and the time it was unavailable
    is kept for `take_outage_s` (the router moves job deadlines by it). `component` names
    the migration set on PostgreSQL, where several share one database."""

    def __init__(
        self,
        target: Path | str,
        migrations: tuple[str, ...] = MIGRATIONS,
        *,
        durable: bool = True,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        component: str = "leadflow",
    ) -> None:
        self.url: str | None = None
        self._path: Path | None = None
        if is_postgres_url(target):
            self.url = str(target)
        else:
            self._path = sqlite_path(target) if isinstance(target, str) else target
        self._component = component
        self._migrations = migrations
        self._durable = durable
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: Any = None  # sqlite3.Connection or pgstore.PgConnection
        self._reader: Any = None
        self._probe: asyncio.Future[None] | None = None
        self._lock = threading.Lock()  # the store thread and the loop both touch these
        self._down_since: float | None = None
        self._down_reason = ""
        self._outages: list[tuple[float, float]] = []  # (ended at, lasted s), epoch

    async def open(self, wait_s: float = OPEN_WAIT_S) -> None:
        """Connect and migrate. Services started at once on an empty database queue for its
        lock (the switch to WAL and the migrations), as does a start during a backup: store
        trouble is waited out for up to `wait_s`, then raised."""
        deadline = time.monotonic() + wait_s
        tries = 0
        while True:
            try:
                await self.run(lambda _: None)
                return
            except StoreUnavailable as e:
                tries += 1
                if time.monotonic() >= deadline:
                    raise
                log.warning("store.open_waiting", error=str(e), tries=tries)
                await asyncio.sleep(compute_backoff(tries, 0.2, 5.0))

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL store has none)."""
        if self._path is None:
            raise ValueError("a PostgreSQL store has no file")
        return self._path

    @property
    def postgres(self) -> bool:
        return self.url is not None

    @property
    def unavailable_reason(self) -> str | None:
        """Why the store is unusable now (since the last failure, until a write succeeds)."""
        with self._lock:
            if self._down_since is None:
                return None
            return (
                f"store unavailable for {time.time() - self._down_since:.0f}s: {self._down_reason}"
            )

    def take_outage_s(self) -> float:
        """Seconds the store was unavailable in outages that ended recently, once."""
        now = time.time()
        with self._lock:
            taken = sum(lasted for ended, lasted in self._outages if now - ended < OUTAGE_KEPT_S)
            self._outages.clear()
        return taken

    async def close(self) -> None:
        await self.run(lambda _: self._close())
        self._executor.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` on the store thread (autocommit unless it opens a transaction)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def read_now(self, fn: Callable[[Connection], T]) -> T:
        """Run a small indexed read on the caller's thread, on a connection of its own.

        For reads of a row or two that the hot path serves often (a job's status): a hop
        to the store thread costs more than the read itself. WAL readers never wait for the
        writer, so this does not block the event loop behind a write."""
        wait_s = min(READ_BUSY_TIMEOUT_S, self._busy_timeout_s)
        try:
            if self._reader is None:
                if self.url is not None:
                    self._reader = pgstore.connect(
                        self.url, lock_timeout_s=wait_s, statement_timeout_s=wait_s
                    )
                else:
                    self._reader = connect(
                        self.path, (), durable=self._durable, busy_timeout_s=wait_s
                    )
            return fn(self._reader)
        except StoreError as e:
            trouble = unavailable(e)
            if trouble is None:
                raise
            self._close_reader()
            raise trouble from e

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` inside one write transaction on the store thread (on
        PostgreSQL possibly more than once: `fn` must have no effect outside the database
        that a second run would repeat)."""

        def in_transaction(conn: Connection) -> T:
            with write_transaction(conn):
                return fn(conn)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, in_transaction)

    async def check_writable(self, probe_name: str = "readiness") -> None:
        """Raise unless a row can be written and committed (readiness): a full disk or a
        read-only file shows here, not only a lock.

        Probes share one attempt in flight, and while the store is known to be
        unavailable they answer at once: a readiness poll must not queue one more
        30-second wait on the store thread behind a blocked writer."""
        if self._probe is None or self._probe.done():
            loop = asyncio.get_running_loop()
            probe = partial(self._probe_writes, name=probe_name)
            self._probe = loop.run_in_executor(self._executor, self._call, probe)
            # Retrieved here so an abandoned probe's failure is not logged as unhandled.
            self._probe.add_done_callback(lambda f: f.cancelled() or f.exception())
        elif (reason := self.unavailable_reason) is not None:
            raise StoreUnavailable(reason)
        await asyncio.shield(self._probe)

    def _probe_writes(self, conn: Connection, name: str) -> None:
        wait_s = min(PROBE_BUSY_TIMEOUT_S, self._busy_timeout_s)
        setting = "SET lock_timeout = {}" if self.postgres else "PRAGMA busy_timeout={}"
        conn.execute(setting.format(int(wait_s * 1000)))
        try:
            with write_transaction(conn):
                write_probe(conn, name)
        finally:
            conn.execute(setting.format(int(self._busy_timeout_s * 1000)))

    def _call(self, fn: Callable[[Connection], T]) -> T:
        started = time.time()
        if self.url is not None:
            return self._call_postgres(self.url, fn, started)
        try:
            if self._conn is None:
                self._conn = connect(
                    self.path,
                    self._migrations,
                    durable=self._durable,
                    busy_timeout_s=self._busy_timeout_s,
                )
            changes = self._conn.total_changes
            result = fn(self._conn)
        except sqlite3.Error as e:
            trouble = unavailable(e)
            if trouble is None:
                raise
            # Unusable since this call began: a lock is waited for the whole busy timeout.
            self._went_down(str(e), started)
            self._leave_transaction()
            raise trouble from e
        if self._wrote(changes):
            self._came_back()
        return result

    def _call_postgres(self, url: str, fn: Callable[[Connection], T], started: float) -> T:
        tries = 0
        while True:
            try:
                if self._conn is None:
                    conn = pgstore.connect(url, lock_timeout_s=self._busy_timeout_s)
                    try:
                        if self._migrations:
                            pgstore.migrate(conn, self._migrations, self._component)
                    except BaseException:
                        conn.close()
                        raise
                    self._conn = conn
                self._conn.wrote_outside_transaction = False
                changes = self._conn.total_changes
                result = fn(self._conn)
            except StoreUnavailable as e:  # could not connect
                self._went_down(str(e), started)
                raise
            except psycopg.Error as e:
                self._leave_transaction()
                conn = self._conn
                if (
                    pgstore.retryable(e)
                    and tries < SERIALIZATION_RETRIES
                    and conn is not None
                    and not conn.wrote_outside_transaction
                ):
                    tries += 1
                    # Another transaction won the race: a short random pause keeps the
                    # two from meeting again at once.
                    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**tries)))
                    continue
                trouble = unavailable(e)
                if trouble is None:
                    raise
                self._went_down(str(e), started)
                raise trouble from e
            if self._wrote(changes):
                self._came_back()
            return result

    def _wrote(self, changes_before: int) -> bool:
        """Whether the call just made committed a change (a closed connection: no)."""
        conn = self._conn
        return conn is not None and conn.total_changes != changes_before and not conn.in_transaction

    def _went_down(self, reason: str, since: float) -> None:
        with self._lock:
            self._down_reason = reason
            if self._down_since is None:
                self._down_since = since

    def _came_back(self) -> None:
        """A write was committed: the outage, if any, is over. Only a write ends one: on
        PostgreSQL reads go on while writers wait on a lock (a backup, a long migration),
        and a read between two failed writes would cut the outage short and let deadlines
        move by less than the router could not record."""
        with self._lock:
            if self._down_since is None:
                return
            now = time.time()
            self._outages.append((now, now - self._down_since))
            self._down_since = None

    def _leave_transaction(self) -> None:
        """After a failure, a connection may be left inside a transaction: roll it back, or
        start afresh if even that fails."""
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except StoreError:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*StoreError):  # a broken connection: nothing to do
                self._conn.close()
            self._conn = None

    def _close_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(*StoreError):  # a broken connection: nothing to do
                self._reader.close()
            self._reader = None


def write_probe(conn: Connection, name: str) -> None:
    """Upsert one small row: what readiness writes to show the store takes writes."""
    conn.execute(
        "INSERT INTO health_probe (name, at) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET at = excluded.at",
        (name, epoch_s()),
    )


def connect(
    path: Path,
    migrations: tuple[str, ...] = MIGRATIONS,
    *,
    durable: bool = True,
    busy_timeout_s: float = BUSY_TIMEOUT_S,
) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreUnavailable(f"store unavailable: cannot create {path.parent}: {e}") from e
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
    )
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed lead survives power loss too, and commits are per batch anyway.
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        if migrations:
            migrate(conn, migrations)
    except BaseException:
        conn.close()  # the next try connects afresh
        raise
    return conn


def migrate(conn: Connection, migrations: tuple[str, ...]) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(migrations):
        return  # up to date: no write lock needed (a reconnect during an outage can read)
    with write_transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(migrations[version:], start=version + 1):
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")


@contextmanager
def write_transaction(conn: Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
    # instead of failing with "database is locked" when a read upgrades to a write.
    # PostgreSQL reads it as SERIALIZABLE (shared/pgstore.py).
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (disk full, I/O error) leaves the transaction open: roll it
        # back too, or the next BEGIN on this connection fails.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def is_postgres(conn: Connection) -> bool:
    return getattr(conn, "dialect", "sqlite") == "postgresql"


def db_now(conn: Connection) -> float:
    """Now in epoch seconds by the database's clock, for leases and deadlines that
    machines with skewed clocks share; on SQLite (one machine) the process clock."""
    if is_postgres(conn):
        return float(conn.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])
    return epoch_s()


def lock_job_leads(conn: Connection, job_ids: Iterable[str]) -> None:
    """Call in a write transaction before inserting leads of these jobs.

    Readers page a job's leads by `seq` (CSV writer, webhook cutter, SSE, `GET …/leads`)
    and never look below their cursor again. On PostgreSQL two transactions writing one
    job (routers overlapping during a failover) could draw seq N and N+1 and commit N+1
    first; a reader between the two commits would skip N for ever. Locking the job's row
    first makes the draws of one job follow its commits, so seq becomes visible in order.
    Rows are locked in job_id order, so two writers of the same jobs never deadlock.
    SQLite's single write lock already orders them."""
    if is_postgres(conn):
        lock_jobs(conn, job_ids)


# The advisory lock `lock_job_seq` takes ("jobs seq").
JOB_SEQ_LOCK = 0x6A6F627320736571


def lock_job_seq(conn: Connection) -> None:
    """Call in a write transaction just before it inserts a job (held until it ends).

    `GET /v1/jobs` pages by the job's `seq`, newest first, and never looks above its cursor
    again. On PostgreSQL two gateways could draw seq N and N+1 and commit N+1 first; a
    listing between the two commits would page past N and miss it. One transaction lock
    makes job inserts draw their seq in commit order (job creation is a few per second,
    not the hot path). SQLite's single write lock already orders them."""
    if is_postgres(conn):
        conn.execute("SELECT pg_advisory_xact_lock(?)", (JOB_SEQ_LOCK,))


def lock_jobs(conn: Connection, job_ids: Iterable[str]) -> dict[str, str]:
    """The state of each of these jobs that exists, in one statement; on PostgreSQL their
    rows are locked as `lock_job_leads` locks them (call it first in a transaction that
    inserts leads of these jobs)."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    lock = " ORDER BY job_id FOR UPDATE" if is_postgres(conn) else ""
    rows = conn.execute(f"SELECT job_id, state FROM jobs WHERE job_id IN ({marks}){lock}", ids)
    return {str(row[0]): str(row[1]) for row in rows}


# Rows per multi-row statement of `insert_rows`: far below SQLite's 32,766 parameters and
# PostgreSQL's 65,535 at the widths used, and large enough that a batch is a statement.
ROWS_PER_STATEMENT = 500


def insert_rows(
    conn: Connection,
    insert: str,
    rows: Sequence[Sequence[Any]],
    tail: str = "",
    *,
    types: Sequence[str] = (),
) -> list[Row]:
    """`insert` (`INSERT INTO t (a, b)`) of many rows in few statements, each a multi-row
    VALUES followed by `tail` (`ON CONFLICT …`, `RETURNING …`): one round trip per
    ROWS_PER_STATEMENT rows instead of one per row. Returns what RETURNING gave.

    With the columns' PostgreSQL `types` (`text`, `bytea`, `float8`, `bigint`), on
    PostgreSQL the rows go as one array per column (`SELECT * FROM unnest(…)`): a statement
    whose text does not change with the number of rows, so it is parsed and planned once
    per connection, where a VALUES list of a few hundred parameters is parsed by the
    driver and planned by the server on every call (3 ms for 100 cache rows)."""
    if types and rows and is_postgres(conn):
        columns = [list(column) for column in zip(*rows, strict=True)]
        cursor = conn.execute(_unnest(insert, tuple(types), tail), columns)
        return list(cursor.fetchall()) if "RETURNING" in tail else []
    found: list[Row] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        sql = _multi_row(insert, len(chunk[0]), len(chunk), tail)
        cursor = conn.execute(sql, [value for row in chunk for value in row])
        if "RETURNING" in tail:
            found.extend(cursor.fetchall())
    return found


@functools.lru_cache(maxsize=64)
def _unnest(insert: str, types: tuple[str, ...], tail: str) -> str:
    arrays = ", ".join(f"?::{t}[]" for t in types)
    return f"{insert} SELECT * FROM unnest({arrays}) {tail}".rstrip()


@functools.lru_cache(maxsize=1024)
def _multi_row(insert: str, width: int, count: int, tail: str) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return f"{insert} VALUES {', '.join([row] * count)} {tail}".rstrip()


class JobSpecs:
    """Job specs by job id, read once per process: a spec never changes once recorded,
    so entries are only ever dropped to bound the memory. For the store thread only."""

    MAX = 10_000

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    def get(self, conn: Connection, job_id: str) -> JobSpec | None:
        """The job's spec, None for a job that does not exist (any more)."""
        spec = self._specs.get(job_id)
        if spec is None:
            row = conn.execute("SELECT spec FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if len(self._specs) >= self.MAX:
                self._specs.clear()
            spec = self._specs[job_id] = decode_spec(row[0])
        return spec


IDEMPOTENCY_TTL_S = 24 * 3600  # how long a repeated Idempotency-Key returns the first job


def job_result_leads(conn: Connection, job_id: str) -> list[Lead]:
    """A job's successful results as input leads (what a dependent job takes)."""
    rows = conn.execute(
        "SELECT data FROM leads WHERE job_id = ? AND status IN ('scraped', 'enriched')"
        " ORDER BY seq",
        (job_id,),
    ).fetchall()
    return [_lead_from_result(row[0]) for row in rows]


_lead_from_result = msgspec.json.Decoder(Lead).decode  # Lead ignores the result-only fields


def csv_owner(conn: Connection, tenant: str, file_name: str) -> str | None:
    """The job a tenant's CSV file belongs to: the newest one that writes it. A file name
    is taken over by a later job; the earlier one no longer writes, rewrites or deletes it."""
    row = conn.execute(
        "SELECT j.job_id FROM destinations d JOIN jobs j ON j.job_id = d.job_id"
        " WHERE j.tenant = ? AND d.type = 'csv' AND d.name = ? ORDER BY j.seq DESC LIMIT 1",
        (tenant, file_name),
    ).fetchone()
    return None if row is None else str(row[0])


def delete_job(conn: Connection, job_id: str) -> list[tuple[str, str]]:
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
        "paused_tasks",
        "job_credits",
        "jobs",
    ):
        conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
    return exports


_spec_decoder = msgspec.json.Decoder(JobSpec)


def decode_spec(raw: bytes) -> JobSpec:
    return _spec_decoder.decode(raw)


def job_status(conn: Connection, row: Row) -> JobStatus:
    dests = conn.execute(
        "SELECT type, name, delivered, failed, cancelled, last_error FROM destinations"
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
            credits=row["credits"],
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
                if row["state"] in STOPPED
                else max(0, row["done"] - d["delivered"] - d["failed"] - d["cancelled"]),
                last_error=d["last_error"],
            )
            for d in dests
        ],
        depends_on=row["depends_on"],
        timeout_s=row["timeout_s"],
        stalled=bool(row["stalled"]),
        stall_reason=row["stall_reason"],
        cooling_down_until=iso(row["cooling_down_until"]),
        credits_by_provider=credits_by_provider(conn, row["job_id"]),
        max_credits=row["max_credits"],
        paused_reason=row["paused_reason"],
    )


def credits_by_provider(conn: Connection, job_id: str) -> dict[str, int]:
    """The credits a job's settled calls cost, by provider (the credit ledger)."""
    rows = conn.execute(
        "SELECT provider, SUM(credits) FROM credit_calls WHERE job_id = ?"
        " AND credits IS NOT NULL GROUP BY provider ORDER BY provider",
        (job_id,),
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows if row[1]}


def fetch_job_row(conn: Connection, job_id: str, tenant: str | None) -> Any:
    sql = f"SELECT seq, tenant, {JOB_COLUMNS} FROM jobs WHERE job_id = ?"
    params: tuple[str, ...] = (job_id,)
    if tenant is not None:
        sql += " AND tenant = ?"
        params = (job_id, tenant)
    return conn.execute(sql, params).fetchone()
