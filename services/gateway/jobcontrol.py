"""`POST /v1/jobs/{id}/cancel`, `DELETE /v1/jobs/{id}` and
`PUT /v1/jobs/{id}/destinations/{index}/secret`.

Cancelling broadcasts the stop on the control stream first (every worker, including ones
that start later, drops the job's tasks and abandons its in-flight calls), then moves the
job to `cancelled` with a conditional update, so it can never overwrite a job that
finished meanwhile. If the broadcast cannot be sent, nothing changes and the client
gets 503. A completed job has nothing left to stop but its pending webhook deliveries:
cancel stops those (deliveries.py), or answers 409 when there are none.
"""

from __future__ import annotations

from functools import partial

import msgspec
from aiohttp import web

from services.gateway.deliveries import (
    DeliveriesCancelled,
    SecretRotation,
    cancel_pending_deliveries,
    rotate_secret,
)
from services.gateway.errors import (
    DestinationNotFound,
    JobFinished,
    JobUnfinished,
    NothingToCancel,
    NotSent,
)
from services.gateway.keys import BROKER, SETTINGS, STORE, tenant_of
from services.gateway.routes import json_response, require_job
from services.gateway.validation import decode_request
from shared import jobstate
from shared.broker import Publish
from shared.dbapi import Connection
from shared.errors import BrokerUnavailable
from shared.jobs import JobStatus
from shared.logging import get_logger
from shared.messages import JobDeleted, JobStopped
from shared.purge import purge_lead_rows
from shared.results import remove_exports
from shared.store import delete_job, fetch_job_row, job_status

log = get_logger(__name__)
CANCEL_REASON = "cancelled by the user"


async def cancel_job(request: web.Request) -> web.Response:
    job = await require_job(request)
    if job.state == "completed":
        return await cancel_deliveries(request, job)
    if job.state in jobstate.TERMINAL:
        raise JobFinished(job.job_id, job.state)
    stop = JobStopped(
        job_id=job.job_id, tenant=tenant_of(request), state="cancelled", reason=CANCEL_REASON
    )
    try:
        await request.app[BROKER].publish([Publish(stop)])
    except BrokerUnavailable as e:
        raise NotSent(f"the cancel could not be broadcast to the workers: {e}") from e
    store = request.app[STORE]

    def cancel(conn: Connection) -> tuple[bool, JobStatus]:
        stopped = jobstate.stop(conn, job.job_id, jobstate.CANCELLED, CANCEL_REASON)
        return stopped, job_status(conn, fetch_job_row(conn, job.job_id, None))

    stopped, status = await store.transaction(cancel)
    if not stopped:
        raise JobFinished(job.job_id, status.state)
    log.info("job.cancelled", job_id=job.job_id)
    return json_response(status, status=202)


async def remove_job(request: web.Request) -> web.Response:
    job = await require_job(request)
    if job.state not in jobstate.TERMINAL:
        raise JobUnfinished(job.job_id, job.state)
    # Broadcast first, as a cancel does: every enricher, including one that starts later,
    # then removes the provider answers the job's leads used from its cache.
    deleted = JobDeleted(job_id=job.job_id, tenant=tenant_of(request))
    try:
        await request.app[BROKER].publish([Publish(deleted)])
    except BrokerUnavailable as e:
        raise NotSent(f"the deletion could not be broadcast to the workers: {e}") from e
    await purge_lead_rows(request.app[STORE], job.job_id)  # a big job: a chunk at a time
    exports = await request.app[STORE].transaction(lambda conn: delete_job(conn, job.job_id))
    settings = request.app[SETTINGS]
    if settings.delete_exports:
        await remove_exports(settings.common.exports_dir, exports)
    log.info("job.deleted", job_id=job.job_id)
    return web.Response(status=204)


async def cancel_deliveries(request: web.Request, job: JobStatus) -> web.Response:
    """A completed job: stop its pending webhook deliveries, or 409 if it has none."""

    def cancel(conn: Connection) -> DeliveriesCancelled | None:
        cancelled = cancel_pending_deliveries(conn, job.job_id)
        if not cancelled.batches:
            return None
        status = job_status(conn, fetch_job_row(conn, job.job_id, None))
        return DeliveriesCancelled(**msgspec.structs.asdict(status), cancelled_deliveries=cancelled)

    answer = await request.app[STORE].transaction(cancel)
    if answer is None:
        raise NothingToCancel(job.job_id)
    log.info(
        "job.deliveries_cancelled",
        job_id=job.job_id,
        batches=answer.cancelled_deliveries.batches,
        leads=answer.cancelled_deliveries.leads,
    )
    return json_response(answer, status=202)


async def replace_secret(request: web.Request) -> web.Response:
    job = await require_job(request)
    raw_index = request.match_info["index"]
    if not raw_index.isdecimal() or len(raw_index) > 3:
        raise DestinationNotFound(job.job_id, raw_index)
    rotation = decode_request(await request.read(), SecretRotation)
    box = request.app[SETTINGS].secret_box
    rotated = await request.app[STORE].transaction(
        partial(rotate_secret, job_id=job.job_id, index=int(raw_index), rotation=rotation, box=box)
    )
    log.info(
        "webhook.secret_rotated",
        job_id=job.job_id,
        destination=rotated.destination,
        previous_until=rotated.previous_secret_until,
    )
    return json_response(rotated)
