"""A tenant's day of results: every lead that got an outcome that UTC day, across its jobs,
the latest outcome per lead id. The gateway pages it (`GET /v1/daily/{date}`), the router
writes it to `exports/<tenant>/daily/<date>.csv` once the day is over; one query for both.

Outcomes are ordered by their sequence number, as a job's are, so a cursor pages the day
exactly like a job's leads; a lead with several outcomes that day appears at its latest.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared.dbapi import Connection


def day_bounds(day: date) -> tuple[float, float]:
    """The day as epoch seconds: from its first instant, up to (not including) the next day's."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def daily_rows(
    conn: Connection, tenant: str, day: date, *, limit: int, after: int | None
) -> list[tuple[int, bytes]]:
    """Up to `limit` (seq, result JSON) of the day after position `after`, in seq order."""
    start, end = day_bounds(day)
    rows = conn.execute(
        "SELECT l.seq, l.data FROM leads l JOIN jobs j ON j.job_id = l.job_id"
        " WHERE j.tenant = ? AND l.outcome_at >= ? AND l.outcome_at < ? AND l.seq > ?"
        " AND NOT EXISTS (SELECT 1 FROM leads later JOIN jobs lj ON lj.job_id = later.job_id"
        " WHERE later.lead_id = l.lead_id AND later.seq > l.seq AND lj.tenant = j.tenant"
        " AND later.outcome_at >= ? AND later.outcome_at < ?)"
        " ORDER BY l.seq LIMIT ?",
        (tenant, start, end, after or 0, start, end, limit),
    ).fetchall()
    return [(int(row[0]), bytes(row[1])) for row in rows]


def tenants_with_outcomes(conn: Connection, day: date) -> list[str]:
    start, end = day_bounds(day)
    rows = conn.execute(
        "SELECT DISTINCT j.tenant FROM leads l JOIN jobs j ON j.job_id = l.job_id"
        " WHERE l.outcome_at >= ? AND l.outcome_at < ? ORDER BY j.tenant",
        (start, end),
    ).fetchall()
    return [str(row[0]) for row in rows]
