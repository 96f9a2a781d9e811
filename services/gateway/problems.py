"""RFC 9457 problem details, and the middleware that turns every error into one.

The gateway's HTTP layer is this module, the operation table and its handlers
(operations.py, routes.py, jobcontrol.py, deadletters.py, usage.py, events.py's
`job_events`, dashboard.py, auth.py) and the decoding of what a request carries
(params.py, validation.py, an upload's parts and lines in upload.py and leadlines.py, the
cursor in queries.py): only these raise `Problem`. Domain
code raises the errors of errors.py, and `problem_of` below is the one place that says
which answer each one is.

Store trouble (`StoreUnavailable`: the store locked, its disk full or failing) is the
service being unavailable, not a bug: 503 with `Retry-After`, never 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from services.gateway import errors as domain
from shared.errors import StoreUnavailable
from shared.logging import get_logger

log = get_logger(__name__)
PROBLEM_BASE = "https://leadflow.dev/problems/"
CONTENT_TYPE = "application/problem+json"
ENTITY_HEADERS = ("content-type", "content-length")
# What a client is told to wait when the store is unavailable (most outages are a lock
# held for a while, or an operator freeing disk space).
STORE_RETRY_AFTER_S = 5
# ... and when the broker did not take what a request had to send.
BROKER_RETRY_AFTER_S = 5

STATUS_TYPES = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Missing or invalid API key"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    429: ("quota-exceeded", "Quota exceeded"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Validation failed"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class FieldError(msgspec.Struct, frozen=True, omit_defaults=True):
    field: str
    message: str
    # An uploaded lead file's line (from 1; a CSV header is line 1) the error is on.
    line: int | None = None


class ProblemDetails(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The body of every error answer (RFC 9457); /openapi.json describes it from this type.

    Extension members are allowed (unknown fields are not forbidden): a problem about a
    job names it in `job_id`.
    """

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    job_id: str | None = None


class Problem(Exception):
    """An error answer; raise it anywhere in a handler."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}

    def response(self) -> web.Response:
        slug, title = STATUS_TYPES.get(self.status, ("error", "Error"))
        details = ProblemDetails(
            type=PROBLEM_BASE + slug,
            title=title,
            status=self.status,
            detail=self.detail,
            errors=self.errors,
        )
        body: dict[str, Any] = {**msgspec.to_builtins(details), **self.extra}
        return web.Response(
            status=self.status,
            body=msgspec.json.encode(body),
            content_type=CONTENT_TYPE,
            headers=self.headers,
        )


def invalid(errors: list[FieldError], status: int = 422) -> Problem:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return Problem(status, f"{first.field}: {first.message}{more}", errors=errors)


def store_unavailable() -> Problem:
    return Problem(
        503,
        "the status store is unavailable for a moment; retry later",
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
    )


def problem_of(error: domain.DomainError) -> Problem:
    """The answer to each domain refusal (errors.py)."""
    detail = str(error)
    match error:
        case domain.JobNotFound() | domain.DestinationNotFound() | domain.NoParkedDeadLetters():
            return Problem(404, detail)
        case domain.ScheduleNotFound():
            return Problem(404, detail)
        case domain.NotAWebhook():
            # The destination has no secret: `…/destinations/{index}/secret` does not exist.
            return Problem(404, detail)
        case domain.BadDependency(reason=reason, missing=True):
            # Like a path naming no job: the job referred to does not exist.
            return invalid([FieldError("depends_on", reason)], 404)
        case domain.QuotaExceeded(quota=quota, used=used, retry_after_s=wait_s):
            return Problem(
                429,
                detail,
                headers={"Retry-After": str(wait_s)},
                extra={"quota": quota, "used": used},
            )
        case domain.IdempotencyConflict(job_id=job_id) | domain.CsvInUse(job_id=job_id):
            return Problem(409, detail, extra={"job_id": job_id})
        case (
            domain.JobFinished()
            | domain.NothingToCancel()
            | domain.JobUnfinished()
            | domain.JobNotPaused()
            | domain.JobNotFinished()
        ):
            return Problem(409, detail)
        case domain.BadDependency(reason=reason):
            return invalid([FieldError("depends_on", reason)])
        case domain.NotSent(job_id=job_id):
            retry = {"Retry-After": str(BROKER_RETRY_AFTER_S)}
            return Problem(503, detail, headers=retry, extra={"job_id": job_id} if job_id else {})
        case domain.TooManyStreams(retry_after_s=wait_s):
            return Problem(
                429,
                detail,
                headers={"Retry-After": str(wait_s)},
                extra={
                    "type": PROBLEM_BASE + "too-many-streams",
                    "title": "Too many event streams",
                },
            )
    log.error("request.unmapped_domain_error", error=type(error).__name__)
    return Problem(500, "an unexpected error occurred; it has been logged")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except domain.DomainError as error:
        return problem_of(error).response()
    except StoreUnavailable as e:
        log.warning(
            "request.store_unavailable", path=request.path, method=request.method, error=str(e)
        )
        return store_unavailable().response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 413:
            return Problem(413, f"the request body is too large: {e.text}").response()
        # Keep what the error says in headers (405's Allow, which RFC 9110 requires);
        # the body and its type are replaced by the problem.
        kept = {k: v for k, v in e.headers.items() if k.lower() not in ENTITY_HEADERS}
        return Problem(e.status, e.reason or "error", headers=kept).response()
    except Exception:
        log.exception("request.failed", path=request.path, method=request.method)
        return Problem(500, "an unexpected error occurred; it has been logged").response()
