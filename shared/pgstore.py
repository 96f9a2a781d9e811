"""The PostgreSQL side of the store: connections that look like the sqlite3 ones the
store's callers use, the dialect translation, migrations, and error classification.

Why psycopg 3 (sync) and not asyncpg: every statement in leadflow is written as a plain
function of a connection (`fn(conn)`) that `shared.store.Store` runs on its store thread,
so the event loop never waits on the database. psycopg's sync API runs those functions
unchanged through a thin adapter (`PgConnection`); asyncpg would force every one of the
call sites to become a coroutine with its own transaction handling.

One connection per store thread (and one for `read_now`), held open and dropped after an
error that leaves it unusable, the next call connecting afresh — the same life cycle as
the SQLite connection; a pool would add threads and a health check per statement for a
single user.

The dialect leadflow writes is SQLite's portable subset; what differs is translated here
and nowhere else:
- statements: `?` placeholders become `%s` (a literal `%` is doubled); `BEGIN IMMEDIATE`
  (a write transaction) becomes `BEGIN ISOLATION LEVEL SERIALIZABLE` and a bare `BEGIN`
  (a consistent read) `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`;
- migrations (DDL only, see shared/migrations/README.md): `INTEGER PRIMARY KEY
  AUTOINCREMENT` -> identity column, `INTEGER` -> `BIGINT`, `REAL` -> `DOUBLE PRECISION`,
  `BLOB` -> `BYTEA`;
- values: Python bools are stored as 0/1 (the schema's flags are integers), integral
  `numeric` results (a `SUM` of integers) come back as `int`, as they do from SQLite, and a
  NUL character in a text parameter, or in an array's text (which PostgreSQL text cannot
  hold; SQLite's can) becomes U+FFFD: a lookup by such a value finds nothing, as it finds
  nothing on SQLite, instead of failing the request.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus

from shared.errors import StoreUnavailable

# Every migration of every component runs under this advisory lock, in the transaction
# that applies it: services started at once on an empty database queue for it, and the
# second finds the schema at its version.
MIGRATION_LOCK = 0x6C656164666C6F77  # "leadflow"
VERSIONS_TABLE = "schema_versions"


class PgRow:
    """A result row readable by position and by column name, like `sqlite3.Row`."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = tuple(values)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PgRow):
            return self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=False))!r})"

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(names, values)


class _IntegralNumericLoader(Loader):
    """`numeric` results as int when integral (SQLite gives an int for a SUM of ints)."""

    def load(self, data: Any) -> Any:
        text = bytes(data).decode()
        if "." in text or "e" in text.lower() or text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        return int(text)


class _BoolAsIntDumper(Dumper):
    """Flags are INTEGER columns (the SQLite schema); a Python bool goes in as 0/1."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


_PLACEHOLDER = re.compile(r"'[^']*'|\"[^\"]*\"|\?|%")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """One statement of leadflow's SQL in PostgreSQL's spelling (see the module doc)."""
    head = sql.strip().upper()
    if head == "BEGIN IMMEDIATE":
        return "BEGIN ISOLATION LEVEL SERIALIZABLE"
    if head in ("BEGIN", "BEGIN DEFERRED", "BEGIN TRANSACTION"):
        return "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

    def swap(match: re.Match[str]) -> str:
        found = match[0]
        if found == "?":
            return "%s"
        if found == "%":
            return "%%"
        return found  # a quoted literal or name: left alone

    return _PLACEHOLDER.sub(swap, sql)


_DDL = (
    (
        re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)


def translate_ddl(statement: str) -> str:
    for pattern, replacement in _DDL:
        statement = pattern.sub(replacement, statement)
    return statement


@functools.lru_cache(maxsize=4096)
def _changes_rows(statement: str) -> bool:
    """Whether a statement's row count is of rows it changed (not of rows it read)."""
    return statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE")


class PgCursor:
    """What callers use of a sqlite3 cursor: fetchone, fetchall, iteration, rowcount."""

    def __init__(self, cursor: psycopg.Cursor[Any], rowcount: int | None = None) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount if rowcount is None else rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection (autocommit; transactions are opened by statement) with the
    sqlite3 surface the store's callers use."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        # Statements that changed data outside a transaction since `reset_writes`: a call
        # that made one cannot be retried whole after a serialization failure.
        self.wrote_outside_transaction = False
        # Rows inserted, updated or deleted since connecting (sqlite3's `total_changes`):
        # the store ends an outage only on a committed write, never on a read.
        self.total_changes = 0

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> PgCursor:
        statement = translate(sql)
        if not self.in_transaction and statement.lstrip()[:6].upper() not in ("SELECT", "BEGIN "):
            self.wrote_outside_transaction = True
        cursor = PgCursor(self.raw.execute(statement, _values(params)))
        if _changes_rows(statement) and cursor.rowcount > 0:
            self.total_changes += cursor.rowcount
        return cursor

    def executemany(self, sql: str, params: Any, /) -> PgCursor:
        rows = [_values(row) for row in params]
        if not self.in_transaction:
            self.wrote_outside_transaction = True
        cursor = self.raw.cursor()
        if not rows:
            return PgCursor(cursor, 0)
        cursor.executemany(translate(sql), rows)
        result = PgCursor(cursor)
        if result.rowcount > 0:
            self.total_changes += result.rowcount
        return result

    def close(self) -> None:
        self.raw.close()


# Built with chr(), not written as literals: Hypothesis feeds string literals of the loaded
# modules to its generators, and these two made tests/e2e/test_openapi_contract.py's
# stateful run take a path its replay could not repeat (FlakyStrategyDefinition).
_NUL = chr(0)
_REPLACEMENT = chr(0xFFFD)


def _values(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(map(_value, params))


def _value(value: Any) -> Any:
    """A parameter with NUL made U+FFFD in its text, also inside an array (a list)."""
    if isinstance(value, str):
        return value.replace(_NUL, _REPLACEMENT) if _NUL in value else value
    if isinstance(value, list):
        return [_value(item) for item in value]
    return value


def connect(url: str, *, lock_timeout_s: float, statement_timeout_s: float = 0) -> PgConnection:
    """A connection in autocommit mode. A lock waited for longer than `lock_timeout_s` (the
    SQLite busy timeout's counterpart) fails the statement as store trouble."""
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        raise StoreUnavailable(f"store unavailable: {e}") from e
    raw.row_factory = _row_factory
    raw.adapters.register_loader("numeric", _IntegralNumericLoader)
    raw.adapters.register_dumper(bool, _BoolAsIntDumper)
    try:
        raw.execute(f"SET lock_timeout = {int(lock_timeout_s * 1000)}")
        raw.execute(f"SET statement_timeout = {int(statement_timeout_s * 1000)}")
        raw.execute("SET TIME ZONE 'UTC'")
    except psycopg.Error:
        raw.close()
        raise
    return PgConnection(raw)


def migrate(conn: PgConnection, migrations: tuple[str, ...], component: str) -> None:
    """Apply the component's migrations not applied yet, each versioned in VERSIONS_TABLE
    (PostgreSQL's stand-in for `PRAGMA user_version`), under the migration lock."""
    from shared.store import statements  # the one splitter of migration scripts

    if _version(conn, component) >= len(migrations):
        return  # up to date: no lock taken (a start during a long transaction elsewhere)
    # READ COMMITTED: once the lock is ours, the version read sees what the last holder
    # committed.
    conn.raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
    try:
        conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.raw.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE}"
            " (component TEXT PRIMARY KEY, version BIGINT NOT NULL)"
        )
        version = _version(conn, component)
        for number, script in enumerate(migrations[version:], start=version + 1):
            for statement in statements(script):
                conn.raw.execute(translate_ddl(statement))
            conn.raw.execute(
                f"INSERT INTO {VERSIONS_TABLE} (component, version) VALUES (%s, %s)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, number),
            )
        conn.raw.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.raw.execute("ROLLBACK")
        raise


def _version(conn: PgConnection, component: str) -> int:
    row = conn.raw.execute("SELECT to_regclass(%s)", (VERSIONS_TABLE,)).fetchone()
    if row is None or row[0] is None:
        return 0
    found = conn.raw.execute(
        f"SELECT version FROM {VERSIONS_TABLE} WHERE component = %s", (component,)
    ).fetchone()
    return 0 if found is None else int(found[0])


# Store trouble, not a bug: the server or the network (class 08, admin shutdown, too
# many connections), a lock or statement timeout, a full disk, a read-only server.
# Integrity, data and programming errors (a constraint, a type mismatch, bad SQL) are bugs.
_UNAVAILABLE_STATES = frozenset({"25006"})  # read_only_sql_transaction (a standby)


def unavailable(error: BaseException) -> StoreUnavailable | None:
    if isinstance(error, StoreUnavailable):
        return error
    if not isinstance(error, psycopg.Error):
        return None
    infrastructure = isinstance(error, psycopg.OperationalError | psycopg.InterfaceError) or (
        getattr(error, "sqlstate", None) in _UNAVAILABLE_STATES
    )
    if not infrastructure:
        return None
    found = StoreUnavailable(f"store unavailable: {error}")
    found.__cause__ = error
    return found


def retryable(error: BaseException) -> bool:
    """A serialization failure or a deadlock: the transaction was rolled back and running
    it again is the answer (its snapshot is what lost, not the data)."""
    return isinstance(error, pg_errors.SerializationFailure | pg_errors.DeadlockDetected)
