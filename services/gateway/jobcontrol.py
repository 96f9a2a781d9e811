"""`POST /v1/jobs/{id}/cancel` and `DELETE /v1/jobs/{id}`.

Cancelling broadcasts the stop on the control stream first (every worker, including ones
that start later, drops the job's tasks and abandons its in-flight calls), then moves the
job to `cancelled` with a conditional update, so it can never overwrite a job that
finished meanwhile. If the broadcast cannot be sent, nothing changes and the client
gets 503.
"""

from __future__ import annotations

import sqlite3

from aiohttp import web

from services.gateway.keys import BROKER, SETTINGS, STORE, tenant_of
from services.gateway.problems import Problem
from services.gateway.routes import json_response, require_job
from shared.broker import Outgoing
from shared.errors import BrokerUnavailable
from shared.jobs import TERMINAL_STATES, JobStatus
from shared.logging import get_logger
from shared.messages import JobStopped
from shared.results import remove_exports
from shared.store import delete_job, fetch_job_row, job_status, stop_job

log = get_logger(__name__)
routes = web.RouteTableDef()
CANCEL_REASON = "cancelled by the user"


@routes.post("/v1/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    job = await require_job(request)
    if job.state in TERMINAL_STATES:
        raise Problem(409, f"job {job.job_id} is already {job.state}")
    stop = JobStopped(
        job_id=job.job_id, tenant=tenant_of(request), state="cancelled", reason=CANCEL_REASON
    )
    try:
        await request.app[BROKER].publish([Outgoing(stop)])
    except BrokerUnavailable as e:
        raise Problem(503, f"the cancel could not be broadcast to the workers: {e}") from e
    store = request.app[STORE]

    def cancel(conn: sqlite3.Connection) -> tuple[bool, JobStatus]:
        stopped = stop_job(conn, job.job_id, "cancelled", CANCEL_REASON)
        return stopped, job_status(conn, fetch_job_row(conn, job.job_id, None))

    stopped, status = await store.transaction(cancel)
    if not stopped:
        raise Problem(409, f"job {job.job_id} is already {status.state}")
    log.info("job.cancelled", job_id=job.job_id)
    return json_response(status, status=202)


@routes.delete("/v1/jobs/{job_id}")
async def remove_job(request: web.Request) -> web.Response:
    job = await require_job(request)
    if job.state not in TERMINAL_STATES:
        raise Problem(409, f"job {job.job_id} is {job.state}; cancel it before deleting it")
    exports = await request.app[STORE].transaction(lambda conn: delete_job(conn, job.job_id))
    settings = request.app[SETTINGS]
    if settings.delete_exports:
        await remove_exports(settings.common.data_dir / "exports", exports)
    log.info("job.deleted", job_id=job.job_id)
    return web.Response(status=204)
