"""The HTTP endpoints of API.md, thin: parse, call the domain, shape the answer."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiohttp import web

from services.gateway.errors import JobNotFound
from services.gateway.estimates import dry_run
from services.gateway.keys import GUARD, SETTINGS, STORE, SUBMITTER, tenant_of
from services.gateway.newjobs import enrich_job, scrape_job, upload_job
from services.gateway.params import (
    CURSOR,
    IDEMPOTENCY_KEY,
    JOBS_KIND,
    JOBS_LIMIT,
    JOBS_STATE,
    LEADS_FORMAT,
    LEADS_JSON_PAGE_DEFAULT,
    LEADS_JSON_PAGE_MAX,
    LEADS_STATUS,
    LEADS_STREAM_LIMIT,
)
from services.gateway.queries import Page, decode_cursor, get_job, list_jobs, list_leads
from services.gateway.schemas import EnrichJobRequest, JobAccepted, ScrapeJobRequest
from services.gateway.submit import NewJob
from services.gateway.upload import is_upload, read_upload, spooled
from services.gateway.validation import decode_request, validate_enrich, validate_scrape
from shared.dbapi import Connection
from shared.jobs import JobStatus
from shared.results import decode_result, encode_csv, field_map

STREAM_CHUNK = 1000
UPLOADS_DIR = "uploads"  # under LEADFLOW_DATA_DIR: spool files of uploads in progress
_encode = msgspec.json.Encoder().encode


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=_encode(payload), status=status, content_type="application/json")


async def submit_enrich(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if is_upload(request):
        return await submit_upload(request)
    raw = await request.read()
    body = decode_request(raw, EnrichJobRequest)
    leads = await validate_enrich(body, settings.max_leads_per_job, request.app[GUARD])
    tenant = tenant_of(request)
    if body.dry_run:
        return json_response(await dry_run(request, leads, tenant))
    job = await enrich_job(body, leads, tenant, settings, request.app[STORE])
    return await accept(request, tenant, job, raw)


async def submit_upload(request: web.Request) -> web.Response:
    """A multipart upload (upload.py): the job exists only once every line is read and valid."""
    settings = request.app[SETTINGS]
    async with spooled(settings.common.data_dir / UPLOADS_DIR) as spool:
        body, digest = await read_upload(
            request, spool, request.app[GUARD], settings.max_upload_leads
        )
        tenant = tenant_of(request)
        return await accept(request, tenant, upload_job(body, spool, tenant, settings), digest)


async def submit_scrape(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    raw = await request.read()
    body = decode_request(raw, ScrapeJobRequest)
    await validate_scrape(body, settings.sources, settings.max_leads_per_job, request.app[GUARD])
    tenant = tenant_of(request)
    return await accept(request, tenant, scrape_job(body, tenant, settings), raw)


async def accept(request: web.Request, tenant: str, job: NewJob, raw: bytes | str) -> web.Response:
    key = IDEMPOTENCY_KEY.read(request)
    submission = await request.app[SUBMITTER].submit(tenant, job, key, raw)
    accepted = JobAccepted(
        job_id=submission.job_id,
        state=submission.state,
        status_url=f"/v1/jobs/{submission.job_id}",
    )
    return json_response(accepted, status=202)


async def job_status(request: web.Request) -> web.Response:
    return json_response(await require_job(request))


async def jobs_index(request: web.Request) -> web.Response:
    state = JOBS_STATE.read(request)
    kind = JOBS_KIND.read(request)
    limit = JOBS_LIMIT.read(request)
    before = CURSOR.read(request)
    tenant = tenant_of(request)
    jobs, next_cursor = await request.app[STORE].run(
        lambda conn: list_jobs(conn, tenant, state=state, kind=kind, limit=limit, before=before)
    )
    return json_response({"jobs": jobs, "next_cursor": next_cursor})


async def job_leads(request: web.Request) -> web.StreamResponse:
    job = await require_job(request)
    status = LEADS_STATUS.read(request)
    job_id = job.job_id

    def fetch(conn: Connection, limit: int, after: int | None) -> Page:
        return list_leads(conn, job_id, status=status, limit=limit, after=after)

    return await answer_leads(request, fetch, job_id)


# One page of result leads: (connection, limit, after the position) -> the page.
LeadFetch = Callable[[Connection, int, int | None], Page]


async def answer_leads(request: web.Request, fetch: LeadFetch, name: str) -> web.StreamResponse:
    """Result leads as `GET /v1/jobs/{id}/leads` answers them (json pages, ndjson or csv);
    `name` names the file a csv or ndjson answer suggests."""
    fmt = LEADS_FORMAT.read(request) or "json"
    given_limit = LEADS_STREAM_LIMIT.read_given(request)
    after = CURSOR.read(request)
    store = request.app[STORE]
    if fmt == "json":
        limit = min(given_limit or LEADS_JSON_PAGE_DEFAULT, LEADS_JSON_PAGE_MAX)
        page = await store.run(lambda conn: fetch(conn, limit, after))
        body = (
            b'{"leads":['
            + b",".join(page.items)
            + b'],"next_cursor":'
            + _encode(page.next_cursor)
            + b"}"
        )
        return web.Response(body=body, content_type="application/json")
    return await stream_leads(request, fetch, name, fmt, after, given_limit)


async def stream_leads(
    request: web.Request,
    fetch: LeadFetch,
    name: str,
    fmt: str,
    after: int | None,
    limit: int | None,
) -> web.StreamResponse:
    """ndjson / csv, streamed page by page; `limit` makes it one page (cursor in a header)."""
    store = request.app[STORE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
            "Content-Disposition": f'inline; filename="{name}.{fmt}"',
        }
    )
    page_size = min(limit or STREAM_CHUNK, STREAM_CHUNK)
    remaining = limit
    fields = field_map(None)
    first_page = await store.run(page_of(fetch, page_size, after))
    if limit is not None and first_page.next_cursor and limit <= page_size:
        response.headers["X-Next-Cursor"] = first_page.next_cursor
    await response.prepare(request)
    if fmt == "csv":
        await response.write(encode_csv([], fields, header=True))
    page = first_page
    while True:
        if fmt == "csv":
            await response.write(
                encode_csv([decode_result(d) for d in page.items], fields, header=False)
            )
        else:
            await response.write(b"".join(item + b"\n" for item in page.items))
        if remaining is not None:
            remaining -= len(page.items)
        if page.next_cursor is None or (remaining is not None and remaining <= 0):
            break
        size = page_size if remaining is None else min(page_size, remaining)
        position = decode_cursor(page.next_cursor)
        page = await store.run(page_of(fetch, size, position))
    await response.write_eof()
    return response


def page_of(fetch: LeadFetch, limit: int, after: int | None) -> Callable[[Connection], Page]:
    return lambda conn: fetch(conn, limit, after)


async def require_job(request: web.Request) -> JobStatus:
    job_id = request.match_info["job_id"]
    tenant = tenant_of(request)
    job = request.app[STORE].read_now(lambda conn: get_job(conn, tenant, job_id))
    if job is None:
        raise JobNotFound(job_id)
    return job
