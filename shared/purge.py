"""Deleting a job's per-lead rows a chunk at a time, before the job itself goes.

A million-lead job's results are a million rows: deleted in one transaction they would
hold the store's write lock (SQLite's one writer) for seconds, and the router's writes
of every other job, and the gateway's, would wait on it. Here each transaction deletes at
most `CHUNK_ROWS` rows, and other writers get the store between two; `delete_job`
(shared/store.py) then removes the rest, which is small, in one transaction. Used by
`DELETE /v1/jobs/{id}` and by the router's retention, for a finished job only: nothing
writes its rows any more. Until the job row goes, a reader may see it with fewer results,
as a job being deleted; a crash in between leaves the job, which the next attempt
finishes deleting.
"""

from __future__ import annotations

from shared.dbapi import Connection
from shared.store import Store

CHUNK_ROWS = 5_000


def delete_lead_rows(conn: Connection, job_id: str, limit: int = CHUNK_ROWS) -> int:
    """Delete up to `limit` of the job's per-lead rows (results, scraped lead ids); the
    count. Its webhook batches go first, so that no delivery sends a batch of results
    half deleted."""
    conn.execute("DELETE FROM webhook_batches WHERE job_id = ?", (job_id,))
    deleted = int(
        conn.execute(
            "DELETE FROM leads WHERE seq IN"
            " (SELECT seq FROM leads WHERE job_id = ? ORDER BY seq LIMIT ?)",
            (job_id, limit),
        ).rowcount
    )
    if deleted < limit:
        deleted += int(
            conn.execute(
                "DELETE FROM scrape_leads WHERE job_id = ? AND lead_id IN"
                " (SELECT lead_id FROM scrape_leads WHERE job_id = ? LIMIT ?)",
                (job_id, job_id, limit - deleted),
            ).rowcount
        )
    return deleted


async def purge_lead_rows(store: Store, job_id: str, chunk_rows: int = CHUNK_ROWS) -> int:
    """Every per-lead row of the job, a transaction per chunk; the count."""
    total = 0
    while deleted := await store.transaction(
        lambda conn: delete_lead_rows(conn, job_id, chunk_rows)
    ):
        total += deleted
    return total
