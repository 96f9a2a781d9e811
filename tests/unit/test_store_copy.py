"""`python -m devtools.store copy`: an SQLite store moved into PostgreSQL keeps its rows,
its sequence numbers and its bytes, and new rows continue after the copied ones."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools.stack import ROOT
from shared.dbapi import Connection
from shared.store import Store, write_transaction
from tests.pg import pg_schema, scaleout_pg_url, unreachable

PG_URL = scaleout_pg_url()
pytestmark = pytest.mark.skipif((reason := unreachable(PG_URL)) is not None, reason=reason or "")


@pytest.fixture
def target_url() -> Iterator[str]:
    with pg_schema(PG_URL) as url:
        yield url


def fill(conn: Connection) -> None:
    with write_transaction(conn):
        for n in range(3):
            conn.execute(
                "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at,"
                " spec) VALUES (?, 't', 'enrich', 'completed', 'normal', 2, ?, ?)",
                (f"job-{n}", "2026-01-01T00:00:00.000Z", b"{\x00spec}"),
            )
            for lead in ("a", "b"):
                conn.execute(
                    "INSERT INTO leads (job_id, lead_id, status, data)"
                    " VALUES (?, ?, 'enriched', ?)",
                    (f"job-{n}", lead, f'{{"id":"{lead}"}}'.encode()),
                )
        conn.execute("DELETE FROM leads WHERE job_id = 'job-0' AND lead_id = 'a'")  # a gap


def run_copy(source: Path, target_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools.store", "copy", "--from", f"sqlite:///{source}",
         "--to", target_url],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_copy_moves_every_row_with_its_seq_and_new_rows_follow(
    tmp_path: Path, target_url: str
) -> None:
    source_path = tmp_path / "leadflow.db"
    source = Store(source_path)
    await source.run(fill)
    expected = await source.run(
        lambda c: [tuple(r) for r in c.execute("SELECT seq, job_id, lead_id, data FROM leads")]
    )
    await source.close()

    done = run_copy(source_path, target_url)
    assert done.returncode == 0, done.stderr
    assert "leads: 5 rows" in done.stdout

    with psycopg.connect(target_url) as conn:
        rows = conn.execute("SELECT seq, job_id, lead_id, data FROM leads ORDER BY seq").fetchall()
        assert rows == sorted(expected)
        assert conn.execute("SELECT spec FROM jobs WHERE job_id = 'job-1'").fetchone() == (
            b"{\x00spec}",
        )
    target = Store(target_url)
    try:
        await target.transaction(
            lambda c: c.execute(
                "INSERT INTO leads (job_id, lead_id, status, data) VALUES ('job-1', 'c',"
                " 'enriched', ?)",
                (b"{}",),
            )
        )
        new_seq = await target.run(
            lambda c: c.execute("SELECT seq FROM leads WHERE lead_id = 'c'").fetchone()[0]
        )
    finally:
        await target.close()
    assert new_seq > max(seq for seq, *_ in expected)

    again = run_copy(source_path, target_url)
    assert again.returncode == 2
    assert "already holds jobs" in again.stderr
