"""Moving an SQLite store into PostgreSQL (`python -m devtools.store copy`).

Both stores are brought to the current schema version first (the migrations of this
release), then every table is copied row by row with its own values — sequence numbers
(`jobs.seq`, `leads.seq`, `dead_letters.id`) included, so cursors and webhook batch ranges
keep meaning what they meant — and the identity sequences are moved past the copied
values. The copy refuses a target that already holds jobs. Run it with every service
stopped: rows written to the SQLite file during the copy would not be moved. The provider
cache is not copied (it is a cache: the answers are bought again when needed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared import pgstore
from shared.store import Store, connect, sqlite_path

CHUNK = 1000
# Columns the PostgreSQL schema fills from an identity sequence.
IDENTITIES = {"jobs": "seq", "leads": "seq", "dead_letters": "id"}


class CopyRefused(Exception):
    """The target is not empty, or a URL is not of the expected kind."""


async def copy_store(
    source_url: str, target_url: str, say: Callable[[str], None] = lambda _: None
) -> dict[str, int]:
    """Copy the SQLite store at `source_url` into the PostgreSQL store at `target_url`;
    rows copied per table."""
    if not source_url.startswith("sqlite:///"):
        raise CopyRefused(f"--from must be a sqlite:/// URL, got {source_url!r}")
    if not target_url.startswith(("postgresql://", "postgres://")):
        raise CopyRefused(f"--to must be a postgresql:// URL, got {target_url!r}")
    path = sqlite_path(source_url)
    if not path.exists():
        raise CopyRefused(f"no SQLite store at {path}")
    for url in (source_url, target_url):  # both at this release's schema version
        store = Store(url)
        await store.open()
        await store.close()
    return copy_tables(path, target_url, say)


def copy_tables(path: Path, target_url: str, say: Callable[[str], None]) -> dict[str, int]:
    source = connect(path, ())
    target = pgstore.connect(target_url, lock_timeout_s=30)
    copied: dict[str, int] = {}
    try:
        if target.execute("SELECT count(*) FROM jobs").fetchone()[0]:
            raise CopyRefused("the target store already holds jobs: copy into an empty one")
        tables = [
            row[0]
            for row in source.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        target.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        for table in tables:
            columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
            names = ", ".join(columns)
            insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
            target.execute(f"DELETE FROM {table}")  # e.g. a readiness probe's row
            cursor = source.execute(f"SELECT {names} FROM {table}")
            count = 0
            while rows := cursor.fetchmany(CHUNK):
                target.executemany(insert, [tuple(row) for row in rows])
                count += len(rows)
            copied[table] = count
            say(f"{table}: {count} rows")
        for table, column in IDENTITIES.items():
            target.execute(
                "SELECT setval(pg_get_serial_sequence(?, ?),"
                f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)",
                (table, column),
            )
        target.execute("COMMIT")
    finally:
        if target.in_transaction:
            target.execute("ROLLBACK")
        source.close()
        target.close()
    return copied
