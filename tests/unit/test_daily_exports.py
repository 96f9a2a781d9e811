"""Daily summary files: once a UTC day is over, one CSV per tenant of that day's outcomes
(the latest per lead id), written once."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from services.router.daily import DailyExporter
from shared.daily import day_bounds
from shared.dbapi import Connection
from shared.messages import ResultLead
from shared.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "db.sqlite")
    await store.open()
    yield store
    await store.close()


def add_outcomes(conn: Connection, tenant: str, job_id: str, at: float, *ids: str) -> None:
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, spec)"
        " VALUES (?, ?, 'enrich', 'completed', 'normal', ?, 'then', ?)",
        (job_id, tenant, len(ids), b"{}"),
    )
    for lead_id in ids:
        lead = ResultLead(id=lead_id, status="enriched", email=f"{lead_id}@{job_id}.example")
        conn.execute(
            "INSERT INTO leads (job_id, lead_id, status, data, outcome_at) VALUES (?, ?, ?, ?, ?)",
            (job_id, lead_id, "enriched", msgspec.json.encode(lead), at),
        )


async def test_a_finished_day_is_written_once_per_tenant(store: Store, tmp_path: Path) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start, _ = day_bounds(yesterday)
    today_start, _ = day_bounds(datetime.now(UTC).date())

    def seed(conn: Connection) -> None:
        add_outcomes(conn, "acme", "j1", start + 10, "a", "b")
        add_outcomes(conn, "acme", "j2", start + 20, "b", "c")  # b again, later
        add_outcomes(conn, "acme", "j3", today_start + 1, "d")  # today: not yet
        add_outcomes(conn, "zeta", "j4", start + 30, "z")

    await store.transaction(seed)
    exporter = DailyExporter(store, tmp_path / "exports")
    await exporter.check()

    acme = exporter.path_for("acme", yesterday)
    rows = list(csv.DictReader(io.StringIO(acme.read_text())))
    assert [row["id"] for row in rows] == ["a", "b", "c"]
    assert rows[1]["email"] == "b@j2.example"  # the latest outcome of b
    zeta = exporter.path_for("zeta", yesterday).read_text()
    assert [r["id"] for r in csv.DictReader(io.StringIO(zeta))] == ["z"]
    assert not exporter.path_for("acme", datetime.now(UTC).date()).exists()

    acme.unlink()  # written once: a later check does not write it again
    await DailyExporter(store, tmp_path / "exports").check()
    assert not acme.exists()
    assert not list((tmp_path / "exports").rglob("*.partial"))


def test_day_bounds_are_utc_midnights() -> None:
    start, end = day_bounds(date(2026, 12, 3))
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 12, 3, tzinfo=UTC)
    assert end - start == 86_400
