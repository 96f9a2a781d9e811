"""`POST /v1/jobs/{id}/resume`: a job paused by a credit budget goes on with a new cap.

The job moves out of `paused` first (shared/jobstate.py `resume`, with the new cap), then
the tasks its enrichers parked while it was paused (shared/credits.py) are published again,
then dropped from the store. A crash between publishing and dropping publishes them twice on
a later resume at worst: the router keeps one outcome per lead and the providers' answers
are in the cache, so a repeat costs nothing. If the broker refuses, the job is paused again
(its parked tasks untouched) and the client gets 503.
"""

from __future__ import annotations

from functools import partial

import msgspec
from aiohttp import web

from services.gateway.errors import JobNotPaused, NotSent
from services.gateway.keys import BROKER, STORE, SUBMITTER, tenant_of
from services.gateway.routes import json_response, require_job
from services.gateway.schemas import ResumeRequest
from services.gateway.validation import decode_request
from shared import credits, jobstate
from shared.broker import Publish
from shared.dbapi import Connection
from shared.errors import BrokerUnavailable
from shared.jobs import JobStatus
from shared.logging import get_logger
from shared.messages import EnrichTask
from shared.store import fetch_job_row, job_status

log = get_logger(__name__)
_decode_task = msgspec.json.Decoder(EnrichTask).decode


async def resume_job(request: web.Request) -> web.Response:
    job = await require_job(request)
    body = decode_request(await request.read() or b"{}", ResumeRequest)
    store = request.app[STORE]
    reason = job.paused_reason

    def resume(conn: Connection) -> tuple[bool, list[tuple[str, bytes]]]:
        moved = jobstate.resume(conn, job.job_id, body.max_credits)
        return moved, credits.parked_tasks(conn, job.job_id) if moved else []

    moved, parked = await store.transaction(resume)
    if not moved:
        raise JobNotPaused(job.job_id, job.state)
    tasks = [_decode_task(raw) for _, raw in parked]
    try:
        notices = await request.app[SUBMITTER].lanes.open(
            ("enrich",), tenant_of(request), job.job_id
        )
        await request.app[BROKER].publish(
            [*notices, *(Publish(task, priority=job.priority) for task in tasks)]
        )
    except BrokerUnavailable as e:
        await store.transaction(
            partial(jobstate.pause, job_id=job.job_id, reason=reason or "budget")
        )
        raise NotSent(f"the job's parked tasks could not be queued: {e}") from e
    status = await store.transaction(partial(drop_and_read, job_id=job.job_id, parked=parked))
    log.info(
        "job.resumed",
        job_id=job.job_id,
        max_credits=body.max_credits,
        tasks=len(tasks),
        leads=sum(len(t.leads) for t in tasks),
    )
    return json_response(status, status=202)


def drop_and_read(conn: Connection, job_id: str, parked: list[tuple[str, bytes]]) -> JobStatus:
    credits.drop_parked(conn, [task_id for task_id, _ in parked])
    return job_status(conn, fetch_job_row(conn, job_id, None))
