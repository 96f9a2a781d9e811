"""The connection and row types the store's callers write their SQL against.

A store callable gets a `sqlite3.Connection` on SQLite and a `shared.pgstore.PgConnection`
on PostgreSQL; both offer what this protocol names, with `?` placeholders, and rows read
by position or by column name. Modules outside the store import these, never sqlite3.
"""

from __future__ import annotations

from typing import Any, Protocol

# A result row: `row[0]` or `row["name"]` (sqlite3.Row or shared.pgstore.PgRow).
Row = Any


class Connection(Protocol):
    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...
