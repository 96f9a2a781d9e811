"""Enrich jobs from a file upload: `POST /v1/jobs/enrich` as `multipart/form-data`, part
`job` (the JSON body without `leads`) first, then part `leads` (CSV or NDJSON, by the
part's Content-Type), streamed.

The gateway never holds the file. Each chunk of the `leads` part is read line by line
(leadlines.py: the JSON body's rules, lead by lead), and the valid leads go to a spool
file on disk; the ids the client gave go to an index on disk beside it (`IdIndex`), which
finds duplicates and keeps assigned ids (`lead-<n>`, as for a JSON body) clear of them.
Only once the whole body has arrived, closing boundary included, and every line is valid
does the job exist: submit.py records it (quota and idempotency as for a JSON body, the
key's digest over what the parts held) and publishes its tasks from the spool, a window
of `WINDOW_LEADS` at a time. A bad line, a body cut off, a part missing: no job, nothing
published. The spool goes when the request ends, whatever the outcome.

Bounds: `LEADFLOW_MAX_UPLOAD_LEADS` leads (413 beyond, at the line that passes it); the
`job` part at most `MAX_JOB_PART_BYTES`; a line at most `leadlines.MAX_LINE_CHARS`.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiofiles
import aiofiles.os
import msgspec
from aiofiles.threadpool.binary import AsyncBufferedIOBase
from aiohttp import BodyPartReader, web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError

from services.gateway.leadlines import LeadLines, Parsed, lead_reader
from services.gateway.problems import FieldError, Problem, invalid
from services.gateway.schemas import LeadIn, UploadJob
from services.gateway.validation import (
    decode_request,
    destination_errors,
    id_candidates,
    refuse_path_like_csv_names,
    to_lead,
)
from shared.broker import Outgoing
from shared.logging import get_logger
from shared.messages import Lead
from shared.netguard import NetGuard
from shared.tasks import enrich_tasks

log = get_logger(__name__)
CHUNK_BYTES = 256 * 1024
MAX_JOB_PART_BYTES = 1024**2
# Leads decoded at once when publishing: a window's tasks are confirmed together.
WINDOW_LEADS = 5_000
SQL_VARIABLES = 500  # per IN (...) list: well under SQLite's oldest limit (999)
_encode = msgspec.json.Encoder().encode
_decode_lead = msgspec.json.Decoder(LeadIn).decode


def is_upload(request: web.Request) -> bool:
    return request.content_type == "multipart/form-data"


class IdIndex:
    """The lead ids an upload's client gave, with their lines, in a private SQLite file:
    a million ids would take some 100 MB of memory in a set. Opened on the first id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def add(self, given: list[tuple[str, int]]) -> list[tuple[int, str, int]]:
        """Record (id, line) pairs; returns (line, id, first line) of each duplicate."""
        conn = self._open()
        first: dict[str, int] = {}
        for lead_id, line in given:
            first.setdefault(lead_id, line)
        earlier = dict(self._lines(conn, list(first)))
        duplicates = [
            (line, lead_id, earlier.get(lead_id, first[lead_id]))
            for lead_id, line in given
            if lead_id in earlier or first[lead_id] != line
        ]
        new = [(lead_id, line) for lead_id, line in first.items() if lead_id not in earlier]
        with conn:
            conn.executemany("INSERT INTO ids (id, line) VALUES (?, ?)", new)
        return duplicates

    def taken(self, ids: list[str]) -> set[str]:
        if self._conn is None:
            return set()
        return {lead_id for lead_id, _ in self._lines(self._conn, ids)}

    def _lines(self, conn: sqlite3.Connection, ids: list[str]) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for i in range(0, len(ids), SQL_VARIABLES):
            part = ids[i : i + SQL_VARIABLES]
            marks = ", ".join("?" * len(part))
            found += conn.execute(f"SELECT id, line FROM ids WHERE id IN ({marks})", part)
        return found

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            # A scratch file of this request: nothing to recover after a crash.
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = OFF")
            self._conn.execute("PRAGMA synchronous = OFF")
            self._conn.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@asynccontextmanager
async def spooled(parent: Path) -> AsyncIterator[Spool]:
    """A spool in a directory of its own under `parent`, removed on the way out."""
    await aiofiles.os.makedirs(parent, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="upload-", dir=parent))
    ids = IdIndex(directory / "ids.sqlite")
    try:
        async with aiofiles.open(directory / "leads.ndjson", "wb") as file:
            yield Spool(directory, file, ids)
    finally:
        ids.close()
        await aiofiles.os.wrap(shutil.rmtree)(directory, ignore_errors=True)


class Spool:
    """The valid leads of one upload, a JSON line each, and the ids the client gave."""

    def __init__(self, directory: Path, file: AsyncBufferedIOBase, ids: IdIndex) -> None:
        self.dir = directory
        self.file = file
        self.ids = ids
        self.leads = 0

    async def write(self, parsed: list[Parsed], reader: LeadLines) -> None:
        """Spool the leads; a duplicate id is the reader's error on its line."""
        given = [(lead.id, line) for line, lead in parsed if lead.id is not None]
        if given:
            for line, lead_id, first in self.ids.add(given):
                reader.error(line, "id", f"duplicate id {lead_id!r}, also used on line {first}")
        if reader.error_count:
            return  # the upload is refused anyway: spare the disk
        self.leads += len(parsed)
        await self.file.write(b"".join(_encode(lead) + b"\n" for _, lead in parsed))

    async def windows(
        self, job_id: str, tenant: str, batch_size: int, priority: str
    ) -> AsyncIterator[list[Outgoing]]:
        """The job's enrich tasks, `WINDOW_LEADS` leads at a time, in file order."""
        await self.file.flush()
        n = 0
        async with aiofiles.open(self.dir / "leads.ndjson", "rb") as spooled:
            tail = b""
            while chunk := await spooled.read(CHUNK_BYTES * 4):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for start in range(0, len(lines), WINDOW_LEADS):
                    leads = [_decode_lead(line) for line in lines[start : start + WINDOW_LEADS]]
                    yield enrich_tasks(
                        job_id, tenant, self.with_ids(leads, n), batch_size, priority
                    )
                    n += len(leads)

    def with_ids(self, leads: list[LeadIn], before: int) -> list[Lead]:
        """The leads with their ids: the client's, or `lead-<n>` (n: the lead's position in
        the file, as for a JSON body) unless the client took that one."""
        wanted = [f"lead-{before + i}" for i, lead in enumerate(leads, 1) if lead.id is None]
        taken = self.ids.taken(wanted)
        out = []
        for i, lead in enumerate(leads, 1):
            lead_id = lead.id
            if lead_id is None:
                lead_id = next(
                    c
                    for c in id_candidates(before + i)
                    if c not in taken and not self.ids.taken([c])
                )
            out.append(to_lead(lead, lead_id))
        return out


async def read_upload(
    request: web.Request, spool: Spool, guard: NetGuard, max_leads: int
) -> tuple[UploadJob, str]:
    """The job part, decoded and checked, with the leads spooled; and the digest of both
    parts for the idempotency key."""
    try:
        return await read_parts(request, spool, guard, max_leads)
    except ValueError as e:  # aiohttp's word for a body that is not multipart as declared
        raise Problem(
            400, f"the request body is not readable as multipart/form-data: {e}"
        ) from None
    except (ConnectionResetError, HttpProcessingError) as e:
        # The client went away (or broke its chunked encoding) mid-body: no job, and
        # probably nobody to answer; not a failure of the gateway's.
        log.info("upload.cut_off", error=str(e), spooled_leads=spool.leads)
        raise Problem(400, f"the upload ended before its last part did: {e}") from None


async def read_parts(
    request: web.Request, spool: Spool, guard: NetGuard, max_leads: int
) -> tuple[UploadJob, str]:
    reader = await request.multipart()
    job_part = await reader.next()
    if not isinstance(job_part, BodyPartReader) or job_part.name != "job":
        raise invalid(
            [FieldError("job", "the first part must be `job`: the JSON body without leads")]
        )
    raw_job = await read_small(job_part)
    body = decode_job(raw_job)
    await check_job(body, guard)
    digest = hashlib.sha256(raw_job)
    digest.update(b"\n--leads--\n")
    leads_part = await reader.next()
    if not isinstance(leads_part, BodyPartReader) or leads_part.name != "leads":
        raise invalid(
            [FieldError("leads", "the second part must be `leads`: a CSV or NDJSON file")]
        )
    media = parse_mimetype(leads_part.headers.get("Content-Type", ""))
    kind = f"{media.type}/{media.subtype}" if media.type else ""
    lines = lead_reader(kind, media.parameters.get("charset"), max_leads, leads_part.filename)
    while chunk := await leads_part.read_chunk(CHUNK_BYTES):
        digest.update(chunk)
        await spool.write(lines.feed(chunk), lines)
    await spool.write(lines.feed(b"", final=True), lines)
    lines.finish()
    # The closing boundary: a body cut off before it raises here, and makes no job.
    if await reader.next() is not None:
        raise invalid([FieldError("body", "only two parts: `job`, then `leads`")])
    return body, digest.hexdigest()


async def read_small(part: BodyPartReader) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > MAX_JOB_PART_BYTES:
            raise Problem(413, f"the job part is over {MAX_JOB_PART_BYTES} bytes")
    return bytes(data)


NOT_IN_THE_JOB_PART = {
    "leads": "send the leads in the `leads` part",
    "depends_on": "an upload brings its own leads; depend on a job in a JSON body",
}


def decode_job(raw: bytes) -> UploadJob:
    try:
        return decode_request(raw, UploadJob)
    except Problem as problem:
        named = problem.errors[0].field if problem.errors else ""
        if named in NOT_IN_THE_JOB_PART:
            raise invalid([FieldError(named, NOT_IN_THE_JOB_PART[named])]) from None
        raise


async def check_job(body: UploadJob, guard: NetGuard) -> None:
    refuse_path_like_csv_names(body.destinations)
    errors = await destination_errors(body.destinations, guard)
    if errors:
        raise invalid(errors)
