"""The gateway's operations, in one table: the routes it serves and /openapi.json both come
from it.

Each `Operation` says its method and path, the handler that serves it, its operationId
and summary, the msgspec type of its request body, its query, header and path parameters
(params.py: the readers the handlers use describe themselves), the type of each answer by
status, the problems it may answer, and whether it is public. `add_routes` registers the
handlers; openapi.py turns the same table into the document. A route that is not in this
table is not served, and an operation in it cannot go undocumented.

Problems every operation of a kind may answer are added here, not listed per operation:
an authenticated operation may answer 401 (no or a wrong key), 429 (too many wrong keys
from the client's address, with `Retry-After`) and 503 (the store unavailable, with
`Retry-After`); one with a body may answer 400 (not JSON), 413 (too large) and 422.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from aiohttp import web

from services.enricher.estimate import EstimateAnswer
from services.gateway.budgets import resume_job
from services.gateway.daily import DAY_PATTERN, daily_leads
from services.gateway.dashboard import ASSETS, asset, index
from services.gateway.deadletters import (
    DeadLetterPage,
    ReplayRequest,
    ReplayResult,
    list_dead_letters,
    replay_dead_letters,
)
from services.gateway.deliveries import DeliveriesCancelled, SecretRotated, SecretRotation
from services.gateway.events import ProgressEvent, StateEvent, job_events
from services.gateway.jobcontrol import cancel_job, remove_job, replace_secret
from services.gateway.params import (
    CURSOR,
    DEAD_LETTERS_JOB,
    DEAD_LETTERS_LIMIT,
    DEAD_LETTERS_STATE,
    EVENTS_LEADS,
    IDEMPOTENCY_KEY,
    JOBS_KIND,
    JOBS_LIMIT,
    JOBS_STATE,
    LAST_EVENT_ID,
    LEADS_FORMAT,
    LEADS_LIMIT_DOC,
    LEADS_STATUS,
    USAGE_FROM,
    USAGE_TO,
    PathParam,
)
from services.gateway.problems import Handler
from services.gateway.rerun import rerun_job
from services.gateway.routes import job_leads, job_status, jobs_index, submit_enrich, submit_scrape
from services.gateway.schedules import (
    ScheduleCreated,
    ScheduleDetail,
    ScheduleList,
    ScheduleRequest,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
)
from services.gateway.schemas import (
    EnrichJobRequest,
    JobAccepted,
    JobPage,
    LeadPage,
    RerunRequest,
    ResumeRequest,
    ScrapeJobRequest,
    UploadJob,
)
from services.gateway.throughput import Throughput, job_throughput
from services.gateway.usage import UsageReport, usage
from shared.jobs import JobStatus
from shared.messages import ResultLead

OPENAPI_PATH = "/openapi.json"
JSON = "application/json"
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)


class HealthStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`/healthz` and `/readyz` (shared/health.py); `reason` says why a service is not ready."""

    status: str
    reason: str | None = None


@dataclass(frozen=True)
class Answer:
    description: str
    body: Any = None  # a msgspec type, answered as application/json
    # Other media types and their schemas; a msgspec type as the schema is referenced.
    media: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    # None: registered by shared/health.add_ops_routes, as every service does.
    handler: Handler | None
    operation_id: str
    summary: str
    tag: str
    answers: dict[int, Answer]
    problems: tuple[int, ...] = ()
    body: Any = None  # the msgspec type the handler decodes the JSON body as
    # Other media types the body may have: media type -> OpenAPI media object (a msgspec
    # type in it is referenced, as in `Answer.media`).
    body_media: dict[str, Any] = field(default_factory=dict)
    params: tuple[Any, ...] = ()  # params.py readers (each has `openapi()`)
    description: str = ""
    public: bool = False

    @property
    def all_problems(self) -> tuple[int, ...]:
        implied: set[int] = set(self.problems)
        if not self.public:
            implied |= {401, 429, 503}
        if self.body is not None:
            implied |= {400, 413, 422}
        return tuple(sorted(implied))


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type=JSON)


# Rules across fields that the types alone do not state (validation.py checks them).
ENRICH_REQUEST = Annotated[
    EnrichJobRequest,
    msgspec.Meta(
        extra_json_schema={
            "description": "Leads to enrich, or a scrape job to take them from (or both).",
            "anyOf": [
                {"required": ["leads"], "properties": {"leads": {"type": "array", "minItems": 1}}},
                {"required": ["depends_on"], "properties": {"depends_on": {"type": "string"}}},
            ],
        }
    ),
]
REPLAY_REQUEST = Annotated[
    ReplayRequest,
    msgspec.Meta(
        extra_json_schema={
            "description": "Either `job_id` (every parked letter of the job) or `ids`.",
            "oneOf": [
                {
                    "required": ["job_id"],
                    "properties": {"job_id": {"type": "string"}, "ids": {"type": "null"}},
                },
                {
                    "required": ["ids"],
                    "properties": {"ids": {"type": "array"}, "job_id": {"type": "null"}},
                },
            ],
        }
    ),
]

SCHEDULE_REQUEST = Annotated[
    ScheduleRequest,
    msgspec.Meta(
        extra_json_schema={
            "description": "Either `every_s` (at least 1 in dev, 60 in production) or `cron` "
            "(UTC; a cron that never comes, like 31 February, is refused).",
            "oneOf": [
                {
                    "required": ["every_s"],
                    "properties": {"every_s": {"type": "integer"}, "cron": {"type": "null"}},
                },
                {
                    "required": ["cron"],
                    "properties": {"cron": {"type": "string"}, "every_s": {"type": "null"}},
                },
            ],
        }
    ),
]

# `/v1/jobs/enrich` and `/v1/jobs/scrape` are other routes, not jobs (405 Allow headers
# would otherwise offer GET and DELETE on them).
JOB_ID = PathParam(
    "job_id",
    "A job id, as `POST /v1/jobs/enrich` answered it.",
    (("type", "string"), ("minLength", 1), ("not", {"enum": ["enrich", "scrape"]})),
    route_pattern="(?!(?:enrich|scrape)$)[^{}/]+",
)
DESTINATION_INDEX = PathParam(
    "index",
    "The destination's position in the job's `destinations`.",
    (("type", "integer"), ("minimum", 0), ("maximum", 999)),
)
SCHEDULE_ID = PathParam(
    "schedule_id", "A schedule id, as `POST /v1/schedules` answered it.", (("type", "string"),)
)
DAY = PathParam(
    "date",
    "A UTC day, YYYY-MM-DD.",
    (("type", "string"), ("format", "date"), ("pattern", DAY_PATTERN)),
)
LEAD_ANSWER = Answer(
    "Result leads (`ResultLead`; CSV columns are its fields)",
    LeadPage,
    media={
        "application/x-ndjson": {
            "type": "string",
            "description": "One ResultLead a line",
        },
        "text/csv": {"type": "string"},
    },
    headers={
        "X-Next-Cursor": {
            "description": "csv/ndjson with `limit`: the cursor of the next page.",
            "schema": {"type": "string"},
        }
    },
)
ASSET_NAME = PathParam(
    "name", "A file the page refers to.", (("type", "string"), ("enum", tuple(sorted(ASSETS))))
)
ACCEPTED = "Accepted: every task is queued"
# A large job as a file (upload.py): the `job` part, then the `leads` part, streamed.
UPLOAD_BODY = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["job", "leads"],
            "additionalProperties": False,
            "properties": {
                "job": UploadJob,
                "leads": {
                    "type": "string",
                    "description": "CSV with a header row (`text/csv`; the columns are lead "
                    "fields, or their usual spreadsheet names; other columns are ignored) "
                    "or one lead a line (`application/x-ndjson`), UTF-8 unless the part's "
                    "Content-Type says `charset`. At most LEADFLOW_MAX_UPLOAD_LEADS leads; "
                    "a bad line answers 422 naming it (`errors[].line`, from 1, a CSV's "
                    "header being line 1), and makes no job. The `job` part comes first.",
                },
            },
        },
        "encoding": {
            "job": {"contentType": JSON},
            "leads": {"contentType": "text/csv, application/x-ndjson"},
        },
    }
}


def sse_event(name: str, data: type) -> dict[str, Any]:
    """One Server-Sent Event as a parsed event (OpenAPI 3.1: the schema is each event's)."""
    return {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"const": name},
            # The seq of the last lead sent (events.py).
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {"type": "string", "contentMediaType": JSON, "contentSchema": data},
        },
    }


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/jobs/enrich",
        submit_enrich,
        "submitEnrichJob",
        "Submit leads to enrich",
        "jobs",
        {
            202: Answer(ACCEPTED, JobAccepted),
            200: Answer("`dry_run`: the estimate; no job created, nothing called", EstimateAnswer),
        },
        # 404: `depends_on` names no job; 415: an upload's leads neither CSV nor NDJSON.
        problems=(404, 409, 415),
        body=ENRICH_REQUEST,
        body_media=UPLOAD_BODY,
        params=(IDEMPOTENCY_KEY,),
        description="Leads in a JSON body (at most LEADFLOW_MAX_LEADS_PER_JOB, within "
        "LEADFLOW_MAX_BODY_BYTES), or a file upload as multipart/form-data: part `job` "
        "first (this body without `leads` and `depends_on`), then part `leads`, streamed, "
        "up to LEADFLOW_MAX_UPLOAD_LEADS. Either way the 202 comes once every task is "
        "queued, and a refused request makes no job.",
    ),
    Operation(
        "POST",
        "/v1/jobs/scrape",
        submit_scrape,
        "submitScrapeJob",
        "Scrape a lead source (and enrich what it finds with `enrich`)",
        "jobs",
        {202: Answer("Accepted: the first page is queued", JobAccepted)},
        problems=(409,),
        body=ScrapeJobRequest,
        params=(IDEMPOTENCY_KEY,),
    ),
    Operation(
        "GET",
        "/v1/jobs",
        jobs_index,
        "listJobs",
        "The tenant's jobs, newest first",
        "jobs",
        {200: Answer("A page of jobs", JobPage)},
        problems=(422,),
        params=(JOBS_STATE, JOBS_KIND, JOBS_LIMIT, CURSOR),
    ),
    Operation(
        "GET",
        "/v1/jobs/{job_id}",
        job_status,
        "getJob",
        "A job's state, progress and deliveries",
        "jobs",
        {200: Answer("The job", JobStatus)},
        # 405: `/v1/jobs/enrich` and `/v1/jobs/scrape` are POST only.
        problems=(404, 405),
        params=(JOB_ID,),
    ),
    Operation(
        "DELETE",
        "/v1/jobs/{job_id}",
        remove_job,
        "deleteJob",
        "Remove a finished job and its results",
        "jobs",
        {204: Answer("Deleted")},
        problems=(404, 405, 409),
        params=(JOB_ID,),
    ),
    Operation(
        "GET",
        "/v1/jobs/{job_id}/leads",
        job_leads,
        "listJobLeads",
        "The job's result leads so far",
        "jobs",
        {200: LEAD_ANSWER},
        problems=(404, 422),
        params=(JOB_ID, LEADS_FORMAT, LEADS_STATUS, LEADS_LIMIT_DOC, CURSOR),
        description="json answers pages of `limit`; ndjson and csv stream every result, "
        "or one page of `limit` with the next cursor in `X-Next-Cursor`.",
    ),
    Operation(
        "GET",
        "/v1/jobs/{job_id}/throughput",
        job_throughput,
        "getJobThroughput",
        "Leads per second over the job's life, from its outcomes' times",
        "jobs",
        {200: Answer("Outcomes per second, bucket by bucket", Throughput)},
        problems=(404, 405),
        params=(JOB_ID,),
    ),
    Operation(
        "GET",
        "/v1/jobs/{job_id}/events",
        job_events,
        "streamJobEvents",
        "Server-Sent Events of a job until it is terminal",
        "jobs",
        {
            200: Answer(
                "An event stream; the schema is that of each event, its `data` JSON: "
                "`lead` a ResultLead (its id the lead's seq), `progress` a ProgressEvent, "
                "`state` a StateEvent.",
                media={
                    "text/event-stream": {
                        "oneOf": [
                            sse_event("lead", ResultLead),
                            sse_event("progress", ProgressEvent),
                            sse_event("state", StateEvent),
                        ]
                    }
                },
            )
        },
        problems=(400, 404, 422),
        params=(JOB_ID, EVENTS_LEADS, LAST_EVENT_ID),
        description="Resumes after `Last-Event-ID`; `: ping` comments keep idle streams open; "
        "`?leads=false` leaves the leads out; `?leads=new` sends only the leads written "
        "after it connected, as does a stream without `leads` of a job with more than "
        "10,000 results (`?leads=true`: every one, from the first). The server ends a stream after "
        "`LEADFLOW_SSE_MAX_LIFETIME_S` without a terminal state: reconnect with "
        "`Last-Event-ID`. 429 (with `Retry-After`) also when the tenant or the gateway has "
        "as many streams open as allowed.",
    ),
    Operation(
        "POST",
        "/v1/jobs/{job_id}/cancel",
        cancel_job,
        "cancelJob",
        "Cancel a job; its remaining leads are dropped",
        "jobs",
        {
            202: Answer(
                "Cancellation requested, or a completed job's deliveries cancelled",
                media={JSON: {"anyOf": [DeliveriesCancelled, JobStatus]}},
            )
        },
        problems=(404, 409),
        params=(JOB_ID,),
        description="On a completed job, cancels its pending webhook deliveries "
        "(`cancelled_deliveries` says how many); 409 when there is nothing to stop.",
    ),
    Operation(
        "POST",
        "/v1/jobs/{job_id}/resume",
        resume_job,
        "resumeJob",
        "Resume a job paused by a credit budget, with a new cap",
        "jobs",
        {202: Answer("Resumed: its parked leads are queued again", JobStatus)},
        problems=(404, 409),
        body=ResumeRequest,
        params=(JOB_ID,),
        description="`max_credits` is the job's new cap, all providers together (absent: "
        "none). A job paused by the tenant's daily budget pauses again while that budget "
        "is spent. 409 unless the job is paused.",
    ),
    Operation(
        "POST",
        "/v1/jobs/{job_id}/rerun",
        rerun_job,
        "rerunJob",
        "Enrich a finished job's leads again, asking only for the fields still missing",
        "jobs",
        {202: Answer(ACCEPTED, JobAccepted)},
        problems=(404, 409),
        body=RerunRequest,
        params=(JOB_ID, IDEMPOTENCY_KEY),
        description="A new enrich job of the finished job's leads as they ended: complete "
        "leads are asked of nobody, answers in the provider cache are free. 409 unless "
        "the job is finished.",
    ),
    Operation(
        "PUT",
        "/v1/jobs/{job_id}/destinations/{index}/secret",
        replace_secret,
        "rotateWebhookSecret",
        "Replace a webhook destination's secret; the old one signs too during `overlap_s`",
        "jobs",
        {200: Answer("Secret replaced", SecretRotated)},
        problems=(404,),
        body=SecretRotation,
        params=(JOB_ID, DESTINATION_INDEX),
    ),
    Operation(
        "GET",
        "/v1/usage",
        usage,
        "getUsage",
        "Metered usage per UTC day, `from` to `to` included (default: today)",
        "usage",
        {200: Answer("Usage (no days when `from` is after `to`)", UsageReport)},
        problems=(422,),
        params=(USAGE_FROM, USAGE_TO),
    ),
    Operation(
        "POST",
        "/v1/schedules",
        create_schedule,
        "createSchedule",
        "Save a search: a scrape job run now, then every `every_s` or at each `cron` time",
        "schedules",
        {201: Answer("Saved; the first run starts now", ScheduleCreated)},
        body=SCHEDULE_REQUEST,
        description="Each run creates a scrape job as `POST /v1/jobs/scrape` would. With "
        "`only_new`, a lead (by the source's lead id) that an earlier run delivered is not "
        "enriched, charged or delivered again. A slot whose previous run is still going is "
        "skipped (a run with a `note`); after downtime a schedule runs once, not once per "
        "missed slot.",
    ),
    Operation(
        "GET",
        "/v1/schedules",
        list_schedules,
        "listSchedules",
        "The tenant's saved searches, newest first, each with its last run",
        "schedules",
        {200: Answer("The schedules", ScheduleList)},
    ),
    Operation(
        "GET",
        "/v1/schedules/{schedule_id}",
        get_schedule,
        "getSchedule",
        "A saved search and its runs, newest first",
        "schedules",
        {200: Answer("The schedule", ScheduleDetail)},
        problems=(404,),
        params=(SCHEDULE_ID,),
    ),
    Operation(
        "DELETE",
        "/v1/schedules/{schedule_id}",
        delete_schedule,
        "deleteSchedule",
        "Stop a saved search (its runs' jobs stay)",
        "schedules",
        {204: Answer("Deleted")},
        problems=(404,),
        params=(SCHEDULE_ID,),
    ),
    Operation(
        "GET",
        "/v1/daily/{date}",
        daily_leads,
        "getDailyLeads",
        "Every lead that got an outcome that UTC day, across the tenant's jobs",
        "jobs",
        {200: LEAD_ANSWER},
        problems=(422,),
        params=(DAY, LEADS_FORMAT, LEADS_LIMIT_DOC, CURSOR),
        description="The latest outcome per lead id, paged like `GET /v1/jobs/{id}/leads`.",
    ),
    Operation(
        "GET",
        "/v1/dead-letters",
        list_dead_letters,
        "listDeadLetters",
        "The tenant's dead letters (messages that exhausted their attempts)",
        "dead letters",
        {200: Answer("A page of dead letters", DeadLetterPage)},
        problems=(422,),
        params=(DEAD_LETTERS_JOB, DEAD_LETTERS_STATE, DEAD_LETTERS_LIMIT, CURSOR),
    ),
    Operation(
        "POST",
        "/v1/dead-letters/replay",
        replay_dead_letters,
        "replayDeadLetters",
        "Send parked dead letters back to work, by job or by ids",
        "dead letters",
        {202: Answer("Sent back to work", ReplayResult)},
        problems=(404,),
        body=REPLAY_REQUEST,
    ),
    Operation(
        "GET",
        "/healthz",
        None,
        "healthz",
        "The process is alive",
        "operations",
        {200: Answer("Alive", HealthStatus)},
        public=True,
    ),
    Operation(
        "GET",
        "/readyz",
        None,
        "readyz",
        "Broker connected, topology declared, store writable",
        "operations",
        {200: Answer("Ready", HealthStatus), 503: Answer("Not ready", HealthStatus)},
        public=True,
    ),
    Operation(
        "GET",
        "/metrics",
        None,
        "metrics",
        "Prometheus metrics",
        "operations",
        {200: Answer("Prometheus text", media={"text/plain": {"type": "string"}})},
        public=True,
    ),
    Operation(
        "GET",
        "/",
        index,
        "dashboard",
        "The dashboard page",
        "operations",
        {200: Answer("The page", media={"text/html": {"type": "string"}})},
        public=True,
    ),
    Operation(
        "GET",
        "/static/{name}",
        asset,
        "dashboardAsset",
        "A file of the dashboard page",
        "operations",
        {200: Answer("The file", media={"*/*": {"type": "string"}})},
        problems=(404,),
        params=(ASSET_NAME,),
        public=True,
    ),
    Operation(
        "GET",
        OPENAPI_PATH,
        openapi_document,
        "openapi",
        "This document",
        "operations",
        {200: Answer("OpenAPI 3.1", media={JSON: {"type": "object"}})},
        public=True,
    ),
)

# Types the document describes beside those the operations take and answer.
EXTRA_TYPES: tuple[Any, ...] = (ResultLead, ProgressEvent, StateEvent)


def add_routes(app: web.Application, only: Collection[str] | None = None) -> None:
    """Register the handler of every operation (or of those whose operationId is in `only`)."""
    for op in OPERATIONS:
        if op.handler is not None and (only is None or op.operation_id in only):
            path = op.path
            for param in op.params:
                if isinstance(param, PathParam):
                    path = param.in_route(path)
            app.router.add_route(op.method, path, op.handler)
