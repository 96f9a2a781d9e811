"""The CSV destination: `<LEADFLOW_EXPORTS_DIR>/<tenant>/<name>.csv`, each lead exactly once.

The file is a projection of the store. The destination row remembers the last lead
written (`cursor_seq`) and the file size after it (`file_offset`). A sync truncates the
file to that offset before appending, so rows written by a sync that crashed before it
recorded its progress are dropped and written again: never lost, never doubled.
A file that is missing or shorter than the recorded offset (deleted, or a router on a
machine that does not see the exports directory the others wrote) is rebuilt from the
store from its first lead, never padded.

The append runs on the store thread, inside the write transaction that records its new
offset (after a batch, the one that recorded the rows too): the file is written and
fsynced there, off the event loop, and a rollback leaves only bytes past the recorded
offset, which the next append cuts off.
"""

from __future__ import annotations

import os
from pathlib import Path

from shared.dbapi import Connection
from shared.jobs import CsvDestination
from shared.jobstate import STOPPED, state_in
from shared.logging import get_logger
from shared.results import decode_result, encode_csv, field_map
from shared.store import JobSpecs, Store, csv_owner, epoch_s

log = get_logger(__name__)
ROWS_PER_SYNC = 5000
QUIET_S = 2.0  # a job without progress this long is not being replayed any more
CATCH_UP_JOBS = 20  # per upkeep round


class CsvExporter:
    def __init__(self, store: Store, exports_dir: Path, specs: JobSpecs | None = None) -> None:
        self.store = store
        self.exports_dir = exports_dir
        self.specs = specs if specs is not None else JobSpecs()

    def path_for(self, tenant: str, dest: CsvDestination) -> Path:
        return self.exports_dir / tenant / dest.file_name

    async def catch_up(self) -> None:
        """Sync the CSVs that lag behind the store of jobs quiet for `QUIET_S`: a file to
        rewrite after a replay (written once, when the replay's batches stopped coming),
        or one whose sync a crash cut short. An upkeep duty."""
        quiet_since = epoch_s() - QUIET_S
        for job_id in await self.store.run(lambda conn: lagging_jobs(conn, quiet_since)):
            await self.sync(job_id)

    async def sync(self, job_id: str) -> None:
        """Write the job's new rows to its CSV files, in a transaction of its own."""
        error = await self.store.transaction(lambda conn: self.export(conn, job_id))
        if error is not None:
            raise error

    def export(self, conn: Connection, job_id: str) -> OSError | None:
        """Append the job's new rows to its CSV files, in the caller's write transaction on
        the store thread (the router's batch: one round trip for rows and files).

        Each file is fsynced before the transaction that records its new offset commits;
        should that transaction not commit, the rows past the recorded offset are cut off
        by the next append, and a transaction run again (PostgreSQL, after a serialization
        failure) writes again from the same offset. A file error stops the export and is
        returned, not raised, so the caller's transaction still commits what it recorded:
        raise it after."""
        try:
            for tenant, idx, dest in csv_targets(conn, job_id, self.specs):
                self._append(conn, job_id, idx, self.path_for(tenant, dest), dest)
        except OSError as e:
            return e
        return None

    def _append(
        self, conn: Connection, job_id: str, idx: int, path: Path, dest: CsvDestination
    ) -> None:
        while True:
            cursor, offset, rows = pending_rows(conn, job_id, idx)
            if cursor == 0 and not rows:
                return
            data = b""
            if rows:
                leads = [decode_result(data) for _, data in rows]
                data = encode_csv(leads, field_map(dest.fields), header=offset == 0)
            if not write_at(path, offset, data):
                # Truncating to `offset` would pad the file with NUL bytes: start it again.
                log.warning("csv.rebuilding", job_id=job_id, path=str(path), offset=offset)
                conn.execute(
                    "UPDATE destinations SET cursor_seq = 0, file_offset = 0, delivered = 0"
                    " WHERE job_id = ? AND idx = ?",
                    (job_id, idx),
                )
                continue
            if not rows:
                return
            conn.execute(
                "UPDATE destinations SET cursor_seq = ?, file_offset = ?,"
                " delivered = delivered + ? WHERE job_id = ? AND idx = ?",
                (rows[-1][0], offset + len(data), len(rows), job_id, idx),
            )
            log.debug("csv.appended", job_id=job_id, rows=len(rows), path=str(path))
            if len(rows) < ROWS_PER_SYNC:
                return  # up to date; rows recorded later come with their own export


def lagging_jobs(conn: Connection, quiet_since: float) -> list[str]:
    """A few jobs whose CSV has rows still to write and no progress since `quiet_since`."""
    rows = conn.execute(
        "SELECT DISTINCT d.job_id FROM destinations d JOIN jobs j ON j.job_id = d.job_id"
        f" WHERE d.type = 'csv' AND j.progress_at < ? AND NOT {state_in(STOPPED, 'j.state')}"
        " AND EXISTS (SELECT 1 FROM leads l WHERE l.job_id = d.job_id AND l.seq > d.cursor_seq)"
        " LIMIT ?",
        (quiet_since, CATCH_UP_JOBS),
    ).fetchall()
    return [str(row[0]) for row in rows]


def csv_targets(
    conn: Connection, job_id: str, specs: JobSpecs | None = None
) -> list[tuple[str, int, CsvDestination]]:
    spec = (specs if specs is not None else JobSpecs()).get(conn, job_id)
    if spec is None or not any(isinstance(d, CsvDestination) for d in spec.destinations):
        return []
    job = conn.execute("SELECT tenant, state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if job is None or job["state"] in STOPPED:
        return []
    return [
        (job["tenant"], idx, dest)
        for idx, dest in enumerate(spec.destinations)
        if isinstance(dest, CsvDestination)
        and csv_owner(conn, job["tenant"], dest.file_name) == job_id
    ]


def pending_rows(
    conn: Connection, job_id: str, idx: int, limit: int = ROWS_PER_SYNC
) -> tuple[int, int, list[tuple[int, bytes]]]:
    dest = conn.execute(
        "SELECT cursor_seq, file_offset FROM destinations WHERE job_id = ? AND idx = ?",
        (job_id, idx),
    ).fetchone()
    rows = conn.execute(
        "SELECT seq, data FROM leads WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (job_id, dest["cursor_seq"], limit),
    ).fetchall()
    return dest["cursor_seq"], dest["file_offset"], [(r[0], r[1]) for r in rows]


def write_at(path: Path, offset: int, data: bytes) -> bool:
    """Make the file exactly `offset` bytes followed by `data`, durably; False, and the
    file left as it was, when it is shorter than `offset` (lost: to be rebuilt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Append mode creates the file when missing; after the truncate, its end is `offset`.
    with path.open("a+b") as f:
        if os.fstat(f.fileno()).st_size < offset:
            return False
        if data:
            f.truncate(offset)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return True
