"""PostgreSQL for tests: a schema of its own per stack or test, dropped afterwards.

The suite runs on PostgreSQL when LEADFLOW_STORE_URL is a postgresql:// URL (`make
test-pg`); the scale-out tests need PostgreSQL whatever the suite runs on and find it at
LEADFLOW_TEST_PG_URL (default: this machine's, database `test`)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def suite_pg_url() -> str | None:
    """The PostgreSQL the whole suite runs on, or None (SQLite)."""
    url = os.environ.get("LEADFLOW_STORE_URL", "")
    return url if url.startswith(("postgresql://", "postgres://")) else None


def scaleout_pg_url() -> str:
    return suite_pg_url() or os.environ.get("LEADFLOW_TEST_PG_URL", DEFAULT_PG_URL)


def unreachable(url: str) -> str | None:
    """Why PostgreSQL at `url` cannot be used, or None."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return f"PostgreSQL unreachable at {url}: {e}"
    return None


def in_schema(url: str, schema: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


def create_schema(url: str) -> tuple[str, str]:
    """A fresh schema in the database at `url`: its name and a URL that uses it."""
    schema = f"lftest_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, in_schema(url, schema)


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh schema in the database at `url`; yields a URL that uses it. Dropped with
    everything in it at the end."""
    schema, schema_url = create_schema(url)
    try:
        yield schema_url
    finally:
        drop_schema(url, schema)
