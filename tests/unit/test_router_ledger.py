"""The router's store writes on a real SQLite file: idempotent outcomes, completion,
webhook batch cutting, and the CSV projection that survives a crash mid-write."""

from __future__ import annotations

import csv
from pathlib import Path

import msgspec
import pytest

import services.router.destinations.csv as csv_module
from services.router.destinations.csv import CsvExporter, pending_rows
from services.router.destinations.webhook import claim_due, mark_delivered, signed_headers
from services.router.handlers import EventHandler
from services.router.ledger import record_events
from shared.dbapi import Connection
from shared.health import Metrics
from shared.jobs import CsvDestination, JobSpec, WebhookDestination
from shared.jobstate import stop
from shared.messages import LeadsEnriched, LeadsFailed, ResultLead
from shared.store import Store, fetch_job_row, job_status


def add_job(conn: Connection, job_id: str, total: int, spec: JobSpec) -> None:
    conn.execute(
        "INSERT INTO jobs (job_id, tenant, kind, state, priority, total, created_at, spec)"
        " VALUES (?, 't', 'enrich', 'queued', 'normal', ?, 'now', ?)",
        (job_id, total, msgspec.json.encode(spec)),
    )
    for idx, dest in enumerate(spec.destinations):
        conn.execute(
            "INSERT INTO destinations (job_id, idx, type, name) VALUES (?, ?, ?, ?)",
            (
                job_id,
                idx,
                dest.__struct_config__.tag,
                dest.file_name if isinstance(dest, CsvDestination) else None,
            ),
        )


def enriched(job_id: str, *ids: str) -> LeadsEnriched:
    return LeadsEnriched(job_id=job_id, tenant="t", leads=[ResultLead(id=i) for i in ids])


async def status(store: Store, job_id: str) -> dict[str, object]:
    job = await store.run(lambda c: job_status(c, fetch_job_row(c, job_id, None)))
    return msgspec.to_builtins(job)  # type: ignore[no-any-return]


async def test_duplicate_outcomes_count_once_and_complete_the_job(store: Store) -> None:
    await store.transaction(lambda c: add_job(c, "j1", 3, JobSpec()))
    await store.transaction(lambda c: record_events(c, [enriched("j1", "a", "b")]))
    await store.transaction(
        lambda c: record_events(c, [enriched("j1", "a", "b"), enriched("j1", "a")])
    )
    job = await status(store, "j1")
    assert job["state"] == "running"
    assert job["progress"] == {
        "total": 3,
        "done": 2,
        "enriched": 2,
        "failed": 0,
        "percent": 66.7,
        "credits": 0,
    }

    failed = LeadsFailed(
        job_id="j1", tenant="t", leads=[ResultLead(id="c", status="failed", error="x")]
    )
    await store.transaction(lambda c: record_events(c, [failed, failed]))
    job = await status(store, "j1")
    assert job["state"] == "completed"
    assert job["progress"]["done"] == 3  # type: ignore[index]
    assert job["progress"]["failed"] == 1  # type: ignore[index]


async def test_outcomes_for_a_finished_or_unknown_job_change_nothing(store: Store) -> None:
    await store.transaction(lambda c: add_job(c, "j2", 1, JobSpec()))
    await store.transaction(lambda c: record_events(c, [enriched("j2", "a")]))
    await store.transaction(
        lambda c: record_events(c, [enriched("j2", "z"), enriched("nope", "a")])
    )
    job = await status(store, "j2")
    assert job["progress"]["done"] == 1  # type: ignore[index]


def park_replayed(conn: Connection, job_id: str, lead_ids: list[str]) -> None:
    """A dead letter of the job's events, replayed by an operator."""
    conn.execute(
        "INSERT INTO dead_letters (message_id, queue, tenant, job_id, message_type, lead_ids,"
        " error, attempts, history, body, dead_at, state, replayed_at)"
        " VALUES (?, 'events', 't', ?, 'lead.enriched', ?, 'x', 1, '[]', x'', 'now',"
        " 'replayed', 'now')",
        (f"dl-{job_id}-{lead_ids[0]}", job_id, msgspec.json.encode(lead_ids)),
    )


async def test_a_replay_records_outcomes_for_a_job_that_ended_meanwhile(store: Store) -> None:
    # The events of b, c and d were parked as dead letters while the job timed out.
    await store.transaction(lambda c: add_job(c, "j5", 4, JobSpec()))
    await store.transaction(lambda c: record_events(c, [enriched("j5", "a")]))
    await store.transaction(lambda c: stop(c, "j5", "timed_out", "timed out after 60s"))
    late = enriched("j5", "b", "c", "d")
    await store.transaction(lambda c: record_events(c, [late]))
    assert (await status(store, "j5"))["progress"]["done"] == 1  # type: ignore[index]

    # An operator replays the dead letters of b and c (d's event was not parked).
    await store.transaction(lambda c: park_replayed(c, "j5", ["b", "c"]))
    await store.transaction(lambda c: record_events(c, [late, late]))
    job = await status(store, "j5")
    assert job["state"] == "timed_out", "a terminal state never changes"
    assert job["progress"]["done"] == 3  # type: ignore[index]
    assert job["progress"]["enriched"] == 3  # type: ignore[index]
    ids = await store.run(
        lambda c: [r[0] for r in c.execute("SELECT lead_id FROM leads WHERE job_id = 'j5'")]
    )
    assert sorted(ids) == ["a", "b", "c"]


async def test_webhook_batches_are_cut_full_then_flushed_at_completion(store: Store) -> None:
    spec = JobSpec(destinations=[WebhookDestination(url="http://x", batch_size=2)])
    await store.transaction(lambda c: add_job(c, "j3", 5, spec))
    await store.transaction(lambda c: record_events(c, [enriched("j3", "a", "b", "c")]))
    batches = await store.transaction(lambda c: claim_due(c, 1e12, 10, 60))
    assert [(b.batch_no, b.size) for b in batches] == [(0, 2)]
    await store.transaction(lambda c: mark_delivered(c, batches[0]))
    await store.transaction(lambda c: record_events(c, [enriched("j3", "d", "e")]))
    batches = await store.transaction(lambda c: claim_due(c, 1e12, 10, 60))
    assert [(b.batch_no, b.size) for b in batches] == [(1, 2), (2, 1)]
    assert len({b.webhook_id for b in batches}) == 2
    assert await store.transaction(lambda c: claim_due(c, 1e12, 10, 60)) == []  # leased


async def test_csv_holds_each_lead_once_even_after_a_crash_mid_write(
    store: Store, tmp_path: Path
) -> None:
    spec = JobSpec(destinations=[CsvDestination(name="out", fields={"ID": "id", "Mail": "email"})])
    await store.transaction(lambda c: add_job(c, "j4", 4, spec))
    exporter = CsvExporter(store, tmp_path / "exports")
    path = tmp_path / "exports" / "t" / "out.csv"

    await store.transaction(lambda c: record_events(c, [enriched("j4", "a", "b")]))
    await exporter.sync("j4")
    # A crash after writing rows but before recording them: the file has rows the store
    # does not know were written.
    await store.transaction(lambda c: record_events(c, [enriched("j4", "c")]))
    with path.open("a") as f:
        f.write("c,\nhalf-a-ro")
    await exporter.sync("j4")
    await exporter.sync("j4")
    await store.transaction(lambda c: record_events(c, [enriched("j4", "d", "c")]))
    await exporter.sync("j4")

    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["ID", "Mail"], ["a", ""], ["b", ""], ["c", ""], ["d", ""]]
    _, _, pending = await store.run(lambda c: pending_rows(c, "j4", 0))
    assert pending == []


async def test_a_lost_csv_file_is_rebuilt_from_the_store(store: Store, tmp_path: Path) -> None:
    spec = JobSpec(destinations=[CsvDestination(name="lost", fields={"ID": "id"})])
    await store.transaction(lambda c: add_job(c, "j5", 4, spec))
    exporter = CsvExporter(store, tmp_path / "exports")
    path = tmp_path / "exports" / "t" / "lost.csv"
    await store.transaction(lambda c: record_events(c, [enriched("j5", "a", "b")]))
    await exporter.sync("j5")
    path.unlink()  # or a router on another machine without the file
    await store.transaction(lambda c: record_events(c, [enriched("j5", "c")]))
    await exporter.sync("j5")

    raw = path.read_bytes()
    assert b"\x00" not in raw
    assert list(csv.reader(raw.decode().splitlines())) == [["ID"], ["a"], ["b"], ["c"]]
    job = await status(store, "j5")
    assert job["destinations"][0]["delivered"] == 3  # type: ignore[index]


def test_webhook_signature_follows_standard_webhooks() -> None:
    import base64
    import hashlib
    import hmac

    key = b"0123456789abcdef"
    headers = signed_headers("msg_1", b'{"a":1}', "whsec_" + base64.b64encode(key).decode())
    signed = f"msg_1.{headers['webhook-timestamp']}.".encode() + b'{"a":1}'
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert headers["webhook-id"] == "msg_1"
    assert "webhook-signature" not in signed_headers("msg_1", b"{}", None)


async def test_a_replay_of_many_leads_rewrites_the_csv_once_when_it_is_over(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed leads that a replay enriches, batch after batch: the CSV is not rewritten per
    batch but once, when the job is quiet, with each lead once and its new outcome."""
    spec = JobSpec(destinations=[CsvDestination(name="out")])
    ids = [f"l{n}" for n in range(60)]
    await store.transaction(lambda c: add_job(c, "j9", len(ids), spec))
    failed = LeadsFailed(
        job_id="j9",
        tenant="t",
        leads=[ResultLead(id=i, status="failed", error="gone") for i in ids],
    )
    exporter = CsvExporter(store, tmp_path / "exports")
    writes: list[int] = []  # the offset each write starts at: 0 is a file (re)written
    real_write_at = csv_module.write_at

    def counted(path: Path, offset: int, data: bytes) -> bool:
        if data:
            writes.append(offset)
        return real_write_at(path, offset, data)

    monkeypatch.setattr(csv_module, "write_at", counted)

    class NoWebhooks:
        def nudge(self) -> None:
            pass

    handler = EventHandler(store, exporter, NoWebhooks(), Metrics())  # type: ignore[arg-type]
    await handler([failed])
    assert writes == [0]
    for start in range(0, len(ids), 10):  # the replay's batches
        await handler([enriched("j9", *ids[start : start + 10])])
    assert writes == [0], "rewritten while the replay was going on"

    monkeypatch.setattr(csv_module, "QUIET_S", 0.0)
    await exporter.catch_up()
    assert writes == [0, 0]
    await exporter.catch_up()
    assert writes == [0, 0]  # up to date: nothing more
    with (tmp_path / "exports" / "t" / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["id"] for row in rows) == sorted(ids)
    assert {row["status"] for row in rows} == {"enriched"}


async def test_one_batch_counts_as_its_events_one_by_one(store: Store) -> None:
    """A batch's outcomes of a job go in together; the counts are those of its events
    recorded one at a time: a lead given twice counts once, and a failed lead enriched
    later in the same batch counts as enriched (the CSV is then rewritten)."""
    spec = JobSpec(destinations=[CsvDestination(name="once")])
    await store.transaction(lambda c: add_job(c, "j6", 4, spec))
    failed = LeadsFailed(
        job_id="j6", tenant="t", leads=[ResultLead(id="b", status="failed", error="x")]
    )
    batch = [enriched("j6", "a"), failed, enriched("j6", "a", "b", "c"), failed]
    recorded = await store.transaction(lambda c: record_events(c, batch))
    assert recorded.outcomes == {"enriched": 2, "failed": 1}
    assert recorded.rewrites == {"j6"}
    job = await status(store, "j6")
    assert job["state"] == "running"
    progress = job["progress"]
    assert (progress["done"], progress["enriched"], progress["failed"]) == (3, 3, 0)  # type: ignore[index]
    rows = await store.run(
        lambda c: c.execute(
            "SELECT lead_id, status FROM leads WHERE job_id = 'j6' ORDER BY seq"
        ).fetchall()
    )
    assert sorted(tuple(row) for row in rows) == [
        ("a", "enriched"),
        ("b", "enriched"),
        ("c", "enriched"),
    ]
    usage = await store.run(
        lambda c: c.execute(
            "SELECT SUM(count) FROM usage WHERE metric = 'leads_enriched'"
        ).fetchone()[0]
    )
    assert usage == 3
