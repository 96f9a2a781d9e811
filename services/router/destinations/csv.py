"""The CSV destination: `<LEADFLOW_EXPORTS_DIR>/<tenant>/<name>.csv`, each lead exactly once.

The file is a projection of the store. The destination row remembers the last lead
written (`cursor_seq`) and the file size after it (`file_offset`). A sync truncates the
file to that offset before appending, so rows written by a sync that crashed before it
recorded its progress are dropped and written again: never lost, never doubled.
A file that is missing or shorter than the recorded offset (deleted, or a router on a
machine that does not see the exports directory the others wrote) is rebuilt from the
store from its first lead, never padded.

File I/O leaves the event loop through aiofiles (the stack's one way), fsync included.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiofiles.os

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


@dataclass(frozen=True)
class Pending:
    """A CSV destination of a job and its next rows: where the file stands (`cursor_seq`,
    `offset`) and up to ROWS_PER_SYNC rows after it, as (seq, stored result)."""

    tenant: str
    idx: int
    dest: CsvDestination
    cursor: int
    offset: int
    rows: list[tuple[int, bytes]]


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

    def pending(self, conn: Connection, job_id: str) -> list[Pending]:
        """The job's CSV files this job writes and their next rows (on the store thread,
        e.g. in the transaction that recorded the rows: one round trip less)."""
        return [
            Pending(tenant, idx, dest, *pending_rows(conn, job_id, idx))
            for tenant, idx, dest in csv_targets(conn, job_id, self.specs)
        ]

    async def sync(self, job_id: str, pending: list[Pending] | None = None) -> None:
        """Write the job's new rows to its CSV files (`pending`: as read just now)."""
        if pending is None:
            pending = await self.store.run(lambda conn: self.pending(conn, job_id))
        for target in pending:
            step: Pending | None = target
            while step is not None:
                step = await self._append(job_id, step)

    async def _append(self, job_id: str, target: Pending) -> Pending | None:
        """Write the target's rows and record them; the next rows if there may be more."""
        if target.cursor == 0 and not target.rows:
            return None
        path = self.path_for(target.tenant, target.dest)
        if target.rows:
            fields = field_map(target.dest.fields)
            leads = [decode_result(data) for _, data in target.rows]
            data = encode_csv(leads, fields, header=target.offset == 0)
            intact = await write_at(path, target.offset, data)
        else:
            intact = await file_size(path) >= target.offset
        if not intact:
            return await self._rebuild(job_id, path, target)
        if not target.rows:
            return None
        last_seq = target.rows[-1][0]

        def record(conn: Connection) -> Pending | None:
            conn.execute(
                "UPDATE destinations SET cursor_seq = ?, file_offset = ?,"
                " delivered = delivered + ? WHERE job_id = ? AND idx = ? AND cursor_seq = ?",
                (
                    last_seq,
                    target.offset + len(data),
                    len(target.rows),
                    job_id,
                    target.idx,
                    target.cursor,
                ),
            )
            if len(target.rows) < ROWS_PER_SYNC:
                return None  # up to date; rows recorded since come with their own sync
            return replace(target, **_where(pending_rows(conn, job_id, target.idx)))

        step = await self.store.transaction(record)
        log.debug("csv.appended", job_id=job_id, rows=len(target.rows), path=str(path))
        return step

    async def _rebuild(self, job_id: str, path: Path, target: Pending) -> Pending:
        # Truncating to `offset` would pad the file with NUL bytes: start it again.
        log.warning("csv.rebuilding", job_id=job_id, path=str(path), offset=target.offset)

        def restart(conn: Connection) -> Pending:
            conn.execute(
                "UPDATE destinations SET cursor_seq = 0, file_offset = 0, delivered = 0"
                " WHERE job_id = ? AND idx = ? AND cursor_seq = ?",
                (job_id, target.idx, target.cursor),
            )
            return replace(target, **_where(pending_rows(conn, job_id, target.idx)))

        return await self.store.transaction(restart)


def _where(found: tuple[int, int, list[tuple[int, bytes]]]) -> dict[str, Any]:
    cursor, offset, rows = found
    return {"cursor": cursor, "offset": offset, "rows": rows}


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


def _write_at(path: Path, offset: int, data: bytes) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Append mode creates the file when missing; after the truncate, its end is `offset`.
    with path.open("a+b") as f:
        if os.fstat(f.fileno()).st_size < offset:
            return False
        f.truncate(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


# Each one hop off the event loop (aiofiles' executor), not one per file operation.
_write_at_off_loop = aiofiles.os.wrap(_write_at)
file_size = aiofiles.os.wrap(_file_size)


async def write_at(path: Path, offset: int, data: bytes) -> bool:
    """Make the file exactly `offset` bytes followed by `data`, durably; False, and the
    file left as it was, when it is shorter than `offset` (lost: to be rebuilt)."""
    return bool(await _write_at_off_loop(path, offset, data))
