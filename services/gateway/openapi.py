"""`GET /openapi.json`: the OpenAPI 3.1 description of the gateway's HTTP API.

Every body schema is generated from the msgspec types the gateway decodes requests with
and encodes answers from (`msgspec.json.schema_components`), so the document cannot drift
from the code; only the paths (which operation takes and answers which type) are written
here. The document is built once per app and served as bytes; the route is public.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from services.gateway.dashboard import ASSETS
from services.gateway.deadletters import DeadLetterPage, ReplayRequest, ReplayResult
from services.gateway.deliveries import DeliveriesCancelled, SecretRotated, SecretRotation
from services.gateway.params import (
    CURSOR,
    DEAD_LETTERS_JOB,
    DEAD_LETTERS_LIMIT,
    DEAD_LETTERS_STATE,
    JOBS_KIND,
    JOBS_LIMIT,
    JOBS_STATE,
    LEADS_FORMAT,
    LEADS_LIMIT_DOC,
    LEADS_STATUS,
    USAGE_FROM,
    USAGE_TO,
)
from services.gateway.problems import STATUS_TYPES, ProblemDetails
from services.gateway.schemas import (
    EnrichJobRequest,
    JobAccepted,
    JobPage,
    LeadPage,
    ScrapeJobRequest,
)
from services.gateway.usage import UsageReport
from shared.jobs import JobStatus
from shared.messages import ResultLead

OPENAPI_PATH = "/openapi.json"
REF = "#/components/schemas/{name}"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
NDJSON = "application/x-ndjson"
AUTH_SCHEME = "bearerAuth"
PUBLIC: list[dict[str, list[str]]] = []  # an empty `security` overrides the global one


class HealthStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`/healthz` and `/readyz` (shared/health.py); `reason` says why a service is not ready."""

    status: str
    reason: str | None = None


def build_openapi() -> dict[str, Any]:
    types = (
        EnrichJobRequest,
        JobAccepted,
        JobStatus,
        JobPage,
        LeadPage,
        ResultLead,
        ProblemDetails,
        HealthStatus,
        DeadLetterPage,
        ReplayRequest,
        ReplayResult,
        ScrapeJobRequest,
        UsageReport,
        DeliveriesCancelled,
        SecretRotation,
        SecretRotated,
    )
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref = {t.__name__: r for t, r in zip(types, refs, strict=True)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadflow API",
            "version": "1",
            "description": "Enrich jobs for B2B leads. Errors are RFC 9457 problem details.",
        },
        "security": [{AUTH_SCHEME: []}],
        "paths": {**job_paths(ref), **dead_letter_paths(ref), **ops_paths(ref)},
        "components": {
            "schemas": schemas,
            "responses": problem_responses(),
            "securitySchemes": {
                AUTH_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from LEADFLOW_API_KEYS (dev without keys: no auth).",
                }
            },
        },
    }


def job_paths(ref: dict[str, dict[str, Any]]) -> dict[str, Any]:
    job_id = path_param("job_id", "A job id, as `POST /v1/jobs/enrich` answered it.")
    return {
        "/v1/jobs/enrich": {
            "post": {
                "operationId": "submitEnrichJob",
                "summary": "Submit leads to enrich",
                "tags": ["jobs"],
                "parameters": [idempotency_key()],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref["EnrichJobRequest"]}},
                },
                "responses": {
                    "202": json_answer("Accepted: every task is queued", ref["JobAccepted"]),
                    **problems(400, 401, 409, 413, 422, 429, 503),
                },
            }
        },
        "/v1/jobs/scrape": {
            "post": {
                "operationId": "submitScrapeJob",
                "summary": "Scrape a lead source (and enrich what it finds with `enrich`)",
                "tags": ["jobs"],
                "parameters": [idempotency_key()],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref["ScrapeJobRequest"]}},
                },
                "responses": {
                    "202": json_answer("Accepted: the first page is queued", ref["JobAccepted"]),
                    **problems(400, 401, 409, 413, 422, 429, 503),
                },
            }
        },
        "/v1/usage": {
            "get": {
                "operationId": "getUsage",
                "summary": "Metered usage per UTC day (default: today)",
                "tags": ["usage"],
                "parameters": [USAGE_FROM.openapi(), USAGE_TO.openapi()],
                "responses": {
                    "200": json_answer("Usage", ref["UsageReport"]),
                    **problems(401, 422),
                },
            }
        },
        "/v1/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "The tenant's jobs, newest first",
                "tags": ["jobs"],
                "parameters": [
                    JOBS_STATE.openapi(),
                    JOBS_KIND.openapi(),
                    JOBS_LIMIT.openapi(),
                    CURSOR.openapi(),
                ],
                "responses": {
                    "200": json_answer("A page of jobs", ref["JobPage"]),
                    **problems(401, 422),
                },
            }
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job's state, progress and deliveries",
                "tags": ["jobs"],
                "parameters": [job_id],
                "responses": {
                    "200": json_answer("The job", ref["JobStatus"]),
                    **problems(401, 404),
                },
            },
            "delete": {
                "operationId": "deleteJob",
                "summary": "Remove a finished job and its results",
                "tags": ["jobs"],
                "parameters": [job_id],
                "responses": {
                    "204": {"description": "Deleted"},
                    **problems(401, 404, 409),
                },
            },
        },
        "/v1/jobs/{job_id}/leads": {"get": leads_operation(job_id, ref)},
        "/v1/jobs/{job_id}/events": {"get": events_operation(job_id)},
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a job; its remaining leads are dropped",
                "description": "On a completed job, cancels its pending webhook deliveries "
                "(`cancelled_deliveries` says how many); 409 when there is nothing to stop.",
                "tags": ["jobs"],
                "parameters": [job_id],
                "responses": {
                    "202": json_answer(
                        "Cancellation requested, or a completed job's deliveries cancelled",
                        {"anyOf": [ref["DeliveriesCancelled"], ref["JobStatus"]]},
                    ),
                    **problems(401, 404, 409),
                },
            }
        },
        "/v1/jobs/{job_id}/destinations/{index}/secret": {
            "put": {
                "operationId": "rotateWebhookSecret",
                "summary": "Replace a webhook destination's secret; the old one signs too "
                "during `overlap_s`",
                "tags": ["jobs"],
                "parameters": [
                    job_id,
                    {
                        "name": "index",
                        "in": "path",
                        "required": True,
                        "description": "The destination's position in the job's `destinations`.",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 999},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref["SecretRotation"]}},
                },
                "responses": {
                    "200": json_answer("Secret replaced", ref["SecretRotated"]),
                    **problems(400, 401, 404, 422),
                },
            }
        },
    }


def dead_letter_paths(ref: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "/v1/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "summary": "The tenant's dead letters (messages that exhausted their attempts)",
                "tags": ["dead letters"],
                "parameters": [
                    DEAD_LETTERS_JOB.openapi(),
                    DEAD_LETTERS_STATE.openapi(),
                    DEAD_LETTERS_LIMIT.openapi(),
                    CURSOR.openapi(),
                ],
                "responses": {
                    "200": json_answer("A page of dead letters", ref["DeadLetterPage"]),
                    **problems(401, 422),
                },
            }
        },
        "/v1/dead-letters/replay": {
            "post": {
                "operationId": "replayDeadLetters",
                "summary": "Send parked dead letters back to work, by job or by ids",
                "tags": ["dead letters"],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref["ReplayRequest"]}},
                },
                "responses": {
                    "202": json_answer("Sent back to work", ref["ReplayResult"]),
                    **problems(400, 401, 404, 422, 503),
                },
            }
        },
    }


def events_operation(job_id: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": "streamJobEvents",
        "summary": "Server-Sent Events of a job until it is terminal",
        "description": "`lead` (a ResultLead, id = its seq), `progress` and `state` events; "
        "resumes after `Last-Event-ID`; `: ping` comments keep idle streams open. The server "
        "ends a stream after `LEADFLOW_SSE_MAX_LIFETIME_S` without a terminal state: reconnect "
        "with `Last-Event-ID`. 429 (with `Retry-After`) when the tenant or the gateway has "
        "as many streams open as allowed.",
        "tags": ["jobs"],
        "parameters": [
            job_id,
            query_param("leads", {"type": "string", "enum": ["true", "false"]}),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "The id of the last event received: resume after it.",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "An event stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **problems(400, 401, 404, 422, 429),
        },
    }


def idempotency_key() -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A repeated key returns the first job (409: other body).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    }


def leads_operation(job_id: dict[str, Any], ref: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cursor_header = {
        "X-Next-Cursor": {
            "description": "csv/ndjson with `limit`: the cursor of the next page, if any.",
            "schema": {"type": "string"},
        }
    }
    return {
        "operationId": "listJobLeads",
        "summary": "The job's result leads so far",
        "description": "json answers pages of `limit`; ndjson and csv stream every result, "
        "or one page of `limit` with the next cursor in `X-Next-Cursor`.",
        "tags": ["jobs"],
        "parameters": [
            job_id,
            LEADS_FORMAT.openapi(),
            LEADS_STATUS.openapi(),
            LEADS_LIMIT_DOC.openapi(),
            CURSOR.openapi(),
        ],
        "responses": {
            "200": {
                "description": "Result leads (`ResultLead`; CSV columns are its fields)",
                "headers": cursor_header,
                "content": {
                    JSON: {"schema": ref["LeadPage"]},
                    NDJSON: {"schema": {"type": "string", "description": "One ResultLead a line"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **problems(401, 404, 422),
        },
    }


def ops_paths(ref: dict[str, dict[str, Any]]) -> dict[str, Any]:
    health = ref["HealthStatus"]
    return {
        "/healthz": ops_get(
            "healthz", "The process is alive", {"200": json_answer("Alive", health)}
        ),
        "/readyz": ops_get(
            "readyz",
            "Broker connected, topology declared, store writable",
            {"200": json_answer("Ready", health), "503": json_answer("Not ready", health)},
        ),
        "/metrics": ops_get(
            "metrics",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
        "/": ops_get(
            "dashboard", "The dashboard page", {"200": text_answer("The page", "text/html")}
        ),
        "/static/{name}": {
            "get": {
                **ops_get(
                    "dashboardAsset",
                    "A file of the dashboard page",
                    {"200": text_answer("The file", "*/*"), **problems(404)},
                )["get"],
                "parameters": [
                    {
                        **path_param("name", "A file the page refers to."),
                        "schema": {"type": "string", "enum": sorted(ASSETS)},
                    }
                ],
            }
        },
        OPENAPI_PATH: ops_get(
            "openapi", "This document", {"200": json_answer("OpenAPI 3.1", {"type": "object"})}
        ),
    }


def ops_get(name: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": name,
            "summary": summary,
            "tags": ["operations"],
            "security": PUBLIC,
            "responses": responses,
        }
    }


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def query_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    # The routes read an empty value (`?state=`) as an absent parameter.
    return {
        "name": name,
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "schema": schema,
    }


def text_answer(description: str, media_type: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def problem_responses() -> dict[str, Any]:
    """One reusable response per problem status, titled as problems.STATUS_TYPES titles it."""
    return {
        slug: {
            "description": title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(name="ProblemDetails")}}},
        }
        for slug, title in STATUS_TYPES.values()
    }


def problems(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"$ref": f"#/components/responses/{STATUS_TYPES[status][0]}"}
        for status in statuses
    }


def add_openapi_route(app: web.Application) -> None:
    body = msgspec.json.encode(build_openapi())

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type=JSON)

    app.router.add_get(OPENAPI_PATH, openapi)
