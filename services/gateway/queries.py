"""Reads behind the GET endpoints: one job, pages of jobs, pages of result leads.

Cursors are opaque to clients (base64 of a position) and stable while results grow:
jobs page newest first by creation order, leads oldest first by the order they finished.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from services.gateway.problems import FieldError, invalid
from shared.dbapi import Connection
from shared.jobs import JobStatus
from shared.store import JOB_COLUMNS, fetch_job_row, job_status


@dataclass(frozen=True)
class Page:
    items: list[bytes]
    next_cursor: str | None


# Positions are SQLite rowids and sequence numbers: 64-bit signed integers.
MAX_POSITION = 2**63 - 1
CURSOR_MAX_CHARS = len(base64.urlsafe_b64encode(f"p{MAX_POSITION}".encode()).rstrip(b"="))
# The cursors of positions below 10**18 (all there will ever be in practice) as a pattern,
# for /openapi.json: base64url without padding of "p" and 1 to 18 digits. Base64 maps
# 3 bytes to 4 characters; with ASCII digits each character can only be one of a few.
_DIGITS_3 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"  # three digits
_DIGIT_1 = "(?:[MN][AQgw]|O[AQ])"  # one more
_DIGITS_2 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"  # two more
_FIRST = "cD[AEIMQUYcgk]"  # "p" and a digit
CURSOR_PATTERN = (  # empty: no cursor, the first page
    f"^(?:{_FIRST}(?:[w-z0-5](?:(?:{_DIGITS_3}){{0,4}}(?:{_DIGIT_1}|{_DIGITS_2})?"
    f"|(?:{_DIGITS_3}){{5}}{_DIGIT_1}?))?)?$"
)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, param: str = "cursor") -> int | None:
    """The position in a cursor this API issued; 422 naming `param` for anything else."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) <= CURSOR_MAX_CHARS:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            # Only the one spelling this API issues (the decoder would skip stray
            # characters and ignore unused bits): the document's pattern is then exact.
            canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == cursor
            text = raw.decode() if canonical else ""
        except (binascii.Error, UnicodeDecodeError, ValueError):
            text = ""
        digits = text[1:]
        if text.startswith("p") and digits.isascii() and digits.isdigit():
            position = int(digits)
            if position <= MAX_POSITION:
                return position
    raise invalid([FieldError(param, "not a cursor this API returned")])


def get_job(conn: Connection, tenant: str, job_id: str) -> JobStatus | None:
    row = fetch_job_row(conn, job_id, tenant)
    return None if row is None else job_status(conn, row)


def list_jobs(
    conn: Connection,
    tenant: str,
    *,
    state: str | None,
    kind: str | None,
    limit: int,
    before: int | None,
) -> tuple[list[JobStatus], str | None]:
    sql = f"SELECT seq, tenant, {JOB_COLUMNS} FROM jobs WHERE tenant = ?"
    params: list[object] = [tenant]
    for column, value in (("state", state), ("kind", kind)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if before is not None:
        sql += " AND seq < ?"
        params.append(before)
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(limit + 1)
    rows = conn.execute(sql, params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    jobs = [job_status(conn, row) for row in rows]
    return jobs, encode_cursor(rows[-1]["seq"]) if more else None


def list_leads(
    conn: Connection, job_id: str, *, status: str | None, limit: int, after: int | None
) -> Page:
    sql = "SELECT seq, data FROM leads WHERE job_id = ? AND seq > ?"
    params: list[object] = [job_id, after or 0]
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY seq LIMIT ?"
    params.append(limit + 1)
    rows = conn.execute(sql, params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([row["data"] for row in rows], encode_cursor(rows[-1]["seq"]) if more else None)
