"""`GET /v1/jobs/{id}/throughput`: leads per second over a job's life, from the times its
outcomes were recorded; what the job page draws as a small chart."""

from __future__ import annotations

import math

import msgspec
from aiohttp import web

from services.gateway.keys import STORE
from services.gateway.routes import json_response, require_job
from shared.clock import iso
from shared.dbapi import Connection

MAX_BUCKETS = 60


class Throughput(msgspec.Struct, frozen=True, kw_only=True):
    """`leads_per_s[i]`: outcomes per second from `first_at + i * bucket_s` on (empty while
    the job has no outcome)."""

    first_at: str | None
    bucket_s: float
    leads_per_s: list[float]


def throughput(times: list[float]) -> Throughput:
    if not times:
        return Throughput(first_at=None, bucket_s=1.0, leads_per_s=[])
    first, last = times[0], times[-1]
    # Whole seconds, as few as make at most MAX_BUCKETS buckets over the job's life.
    bucket_s = float(max(1, math.ceil((last - first + 1e-9) / MAX_BUCKETS)))
    counts = [0] * (int((last - first) // bucket_s) + 1)
    for at in times:
        counts[int((at - first) // bucket_s)] += 1
    return Throughput(
        first_at=iso(first), bucket_s=bucket_s, leads_per_s=[c / bucket_s for c in counts]
    )


def outcome_times(conn: Connection, job_id: str) -> list[float]:
    rows = conn.execute(
        "SELECT outcome_at FROM leads WHERE job_id = ? AND outcome_at IS NOT NULL"
        " ORDER BY outcome_at",
        (job_id,),
    )
    return [float(row[0]) for row in rows]


async def job_throughput(request: web.Request) -> web.Response:
    job = await require_job(request)
    times = await request.app[STORE].run(lambda conn: outcome_times(conn, job.job_id))
    return json_response(throughput(times))
