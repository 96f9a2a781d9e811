"""RFC 9457 problem details, and the middleware that turns every error into one.

Store trouble (`StoreUnavailable`: the store locked, its disk full or failing) is the
service being unavailable, not a bug: 503 with `Retry-After`, never 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from shared.errors import StoreUnavailable
from shared.logging import get_logger

log = get_logger(__name__)
PROBLEM_BASE = "https://leadflow.dev/problems/"
CONTENT_TYPE = "application/problem+json"
ENTITY_HEADERS = ("content-type", "content-length")
# What a client is told to wait when the store is unavailable (most outages are a lock
# held for a while, or an operator freeing disk space).
STORE_RETRY_AFTER_S = 5

STATUS_TYPES = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Missing or invalid API key"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    429: ("quota-exceeded", "Quota exceeded"),
    413: ("payload-too-large", "Payload too large"),
    422: ("validation-error", "Validation failed"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
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
