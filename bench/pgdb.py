"""A PostgreSQL database of a scenario's own: created empty, dropped afterwards.

The server is the one `LEADFLOW_BENCH_PG_URL` names (default: this machine's, trust auth);
each scenario gets a database named after a fresh prefix, so runs never see each other's
rows and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql
from yarl import URL

ADMIN_URL = os.environ.get("LEADFLOW_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 3


async def postgres_available() -> str | None:
    """None when the server answers, else why it cannot be used."""

    def probe() -> None:
        with psycopg.connect(ADMIN_URL, connect_timeout=CONNECT_TIMEOUT_S):
            pass

    try:
        await asyncio.to_thread(probe)
    except psycopg.Error as e:
        return f"no PostgreSQL at {URL(ADMIN_URL).with_password(None)}: {e}".strip()
    return None


@asynccontextmanager
async def temporary_database() -> AsyncIterator[str]:
    """The URL of a new empty database; it is dropped on the way out, whatever happened."""
    name = f"lfbench_{secrets.token_hex(4)}"
    await asyncio.to_thread(_admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield str(URL(ADMIN_URL).with_path(f"/{name}"))
    finally:
        await asyncio.to_thread(
            _admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _admin(statement: sql.Composed) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(statement)
