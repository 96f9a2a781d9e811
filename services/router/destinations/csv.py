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
from pathlib import Path

import aiofiles
import aiofiles.os

from shared.dbapi import Connection
from shared.jobs import CsvDestination
from shared.jobstate import STOPPED, state_in
from shared.logging import get_logger
from shared.results import decode_result, encode_csv, field_map
from shared.store import Store, csv_owner, decode_spec, epoch_s

log = get_logger(__name__)
_fsync = aiofiles.os.wrap(os.fsync)  # aiofiles has no fsync of its own
ROWS_PER_SYNC = 5000
QUIET_S = 2.0  # a job without progress this long is not being replayed any more
CATCH_UP_JOBS = 20  # per upkeep round


class CsvExporter:
    def __init__(self, store: Store, exports_dir: Path) -> None:
        self.store = store
        self.exports_dir = exports_dir

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
        targets = await self.store.run(lambda conn: csv_targets(conn, job_id))
        for tenant, idx, dest in targets:
            await self._rebuild_if_lost(job_id, tenant, idx, dest)
            while await self._append(job_id, tenant, idx, dest):
                pass

    async def _rebuild_if_lost(
        self, job_id: str, tenant: str, idx: int, dest: CsvDestination
    ) -> None:
        path = self.path_for(tenant, dest)
        try:
            size = (await aiofiles.os.stat(path)).st_size
        except FileNotFoundError:
            size = -1
        cursor, offset, _ = await self.store.run(lambda c: pending_rows(c, job_id, idx, 0))
        if cursor == 0 or size >= offset:
            return
        # Truncating to `offset` would pad the file with NUL bytes: start it again.
        log.warning("csv.rebuilding", job_id=job_id, path=str(path), size=size, offset=offset)
        await self.store.transaction(
            lambda conn: conn.execute(
                "UPDATE destinations SET cursor_seq = 0, file_offset = 0, delivered = 0"
                " WHERE job_id = ? AND idx = ? AND cursor_seq = ?",
                (job_id, idx, cursor),
            )
        )

    async def _append(self, job_id: str, tenant: str, idx: int, dest: CsvDestination) -> bool:
        """Write the next rows; False when the file is up to date."""
        cursor, offset, rows = await self.store.run(lambda c: pending_rows(c, job_id, idx))
        if not rows:
            return False
        fields = field_map(dest.fields)
        data = encode_csv([decode_result(data) for _, data in rows], fields, header=offset == 0)
        path = self.path_for(tenant, dest)
        await write_at(path, offset, data)
        last_seq = rows[-1][0]

        await self.store.transaction(
            lambda conn: conn.execute(
                "UPDATE destinations SET cursor_seq = ?, file_offset = ?,"
                " delivered = delivered + ? WHERE job_id = ? AND idx = ? AND cursor_seq = ?",
                (last_seq, offset + len(data), len(rows), job_id, idx, cursor),
            )
        )
        log.debug("csv.appended", job_id=job_id, rows=len(rows), path=str(path))
        return True


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


def csv_targets(conn: Connection, job_id: str) -> list[tuple[str, int, CsvDestination]]:
    job = conn.execute(
        "SELECT tenant, state, spec FROM jobs WHERE job_id = ?", (job_id,)
    ).fetchone()
    if job is None or job["state"] in STOPPED:
        return []
    spec = decode_spec(job["spec"])
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


async def write_at(path: Path, offset: int, data: bytes) -> None:
    """Make the file exactly `offset` bytes followed by `data`, durably."""
    await aiofiles.os.makedirs(path.parent, exist_ok=True)
    # Append mode creates the file when missing; after the truncate, its end is `offset`.
    async with aiofiles.open(path, "a+b") as f:
        await f.truncate(offset)
        await f.write(data)
        await f.flush()
        await _fsync(f.fileno())
