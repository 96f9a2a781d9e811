"""`GET /v1/daily/{date}`: a tenant's day of results (shared/daily.py), paged and formatted
exactly like a job's leads (routes.answer_leads)."""

from __future__ import annotations

import re
from datetime import date

from aiohttp import web

from services.gateway.keys import tenant_of
from services.gateway.problems import FieldError, invalid
from services.gateway.queries import Page, encode_cursor
from services.gateway.routes import answer_leads
from shared.daily import daily_rows
from shared.dbapi import Connection

_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
# Exactly the calendar days YYYY-MM-DD (leap years included): the document states it, and
# the route takes a day if and only if it matches.
DAY_PATTERN = (
    f"^(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    f"|(?:0[13578]|1[02])-31)|{_LEAP_YEAR}-02-29)$"
)
_DAY = re.compile(DAY_PATTERN)


def requested_day(request: web.Request) -> date:
    raw = request.match_info["date"]
    if _DAY.match(raw):
        return date.fromisoformat(raw)
    raise invalid([FieldError("date", f"{raw!r} is not a UTC day as YYYY-MM-DD (2026-12-03)")])


async def daily_leads(request: web.Request) -> web.StreamResponse:
    day = requested_day(request)
    tenant = tenant_of(request)

    def fetch(conn: Connection, limit: int, after: int | None) -> Page:
        rows = daily_rows(conn, tenant, day, limit=limit + 1, after=after)
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([data for _, data in rows], encode_cursor(rows[-1][0]) if more else None)

    return await answer_leads(request, fetch, f"daily-{day.isoformat()}")
