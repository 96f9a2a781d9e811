"""Query and header parameters: each one read through a typed reader that holds its bounds,
and that describes it in /openapi.json (operations.py lists them per operation), so the
document states exactly what the routes accept.

An absent or empty value means the default (`?state=` filters nothing). Anything else
that is not a value of the parameter's type within its bounds answers 422 with the
parameter named in `errors`: nothing unchecked reaches the store (a cursor past SQLite's
64-bit integers was a 500).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from aiohttp import web

from services.gateway.problems import FieldError, Problem, invalid
from services.gateway.queries import CURSOR_MAX_CHARS, CURSOR_PATTERN, decode_cursor
from shared.jobs import JOB_STATES

DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def raw_value(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return None if value is None or value == "" else value


def param_doc(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An OpenAPI query parameter (an empty value reads as absent, so it is allowed)."""
    doc = {"name": name, "in": "query", "required": False, "allowEmptyValue": True}
    return {**doc, **({"description": description} if description else {}), "schema": schema}


@dataclass(frozen=True)
class IntParam:
    name: str
    default: int
    minimum: int
    maximum: int
    description: str = ""

    def read(self, request: web.Request) -> int:
        value = self.read_given(request)
        return self.default if value is None else value

    def read_given(self, request: web.Request) -> int | None:
        raw = raw_value(request, self.name)
        if raw is None:
            return None
        # ASCII digits only: int() would also take " 5", "+5", "1_0" and other scripts'
        # digits; the length check keeps int() off huge strings.
        if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(self.maximum)):
            raise self.refused()
        number = int(raw)
        if not self.minimum <= number <= self.maximum:
            raise self.refused()
        return number

    def refused(self) -> Problem:
        message = f"must be an integer from {self.minimum} to {self.maximum}"
        return invalid([FieldError(self.name, message)])

    def openapi(self) -> dict[str, Any]:
        schema = {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
            "default": self.default,
        }
        return param_doc(self.name, schema, self.description)


@dataclass(frozen=True)
class ChoiceParam:
    name: str
    choices: tuple[str, ...]

    def read(self, request: web.Request) -> str | None:
        raw = raw_value(request, self.name)
        if raw is not None and raw not in self.choices:
            raise invalid([FieldError(self.name, f"must be one of {', '.join(self.choices)}")])
        return raw

    def openapi(self) -> dict[str, Any]:
        return param_doc(self.name, {"type": "string", "enum": list(self.choices)})


@dataclass(frozen=True)
class TextParam:
    name: str
    max_length: int

    def read(self, request: web.Request) -> str | None:
        raw = raw_value(request, self.name)
        if raw is not None and len(raw) > self.max_length:
            message = f"must be at most {self.max_length} characters"
            raise invalid([FieldError(self.name, message)])
        return raw

    def openapi(self) -> dict[str, Any]:
        return param_doc(self.name, {"type": "string", "maxLength": self.max_length})


@dataclass(frozen=True)
class CursorParam:
    name: str = "cursor"

    def read(self, request: web.Request) -> int | None:
        return decode_cursor(raw_value(request, self.name), self.name)

    def openapi(self) -> dict[str, Any]:
        schema = {"type": "string", "maxLength": CURSOR_MAX_CHARS, "pattern": CURSOR_PATTERN}
        return param_doc(self.name, schema, "`next_cursor` of the previous page (opaque).")


@dataclass(frozen=True)
class EventIdHeader:
    """`Last-Event-ID`: the id of the last SSE event received (absent or empty: 0)."""

    name: str = "Last-Event-ID"
    max_digits: int = 18  # ids are lead seqs, far below 10**18

    def read(self, request: web.Request) -> int:
        raw = request.headers.get(self.name, "").strip()
        if raw == "":
            return 0
        if not (raw.isascii() and raw.isdigit()) or len(raw) > self.max_digits:
            message = "must be an event id this stream sent (an integer)"
            raise invalid([FieldError(self.name, message)], 400)
        return int(raw)

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": "header",
            "required": False,
            "description": "The id of the last event received: resume after it.",
            "schema": {"type": "string", "pattern": f"^[0-9]{{0,{self.max_digits}}}$"},
        }


@dataclass(frozen=True)
class TextHeader:
    name: str
    max_length: int
    description: str

    def read(self, request: web.Request) -> str | None:
        """The header's value (None when absent); present, it has 1 to max_length chars."""
        raw = request.headers.get(self.name)
        if raw is not None and not 1 <= len(raw) <= self.max_length:
            message = f"must be 1 to {self.max_length} characters"
            raise invalid([FieldError(self.name, message)], 400)
        return raw

    def openapi(self) -> dict[str, Any]:
        schema = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        return {
            "name": self.name,
            "in": "header",
            "required": False,
            "description": self.description,
            "schema": schema,
        }


@dataclass(frozen=True)
class PathParam:
    """A path segment; the route reads it from `match_info`, this describes it."""

    name: str
    description: str
    schema: tuple[tuple[str, Any], ...] = (("type", "string"),)
    # The regular expression the route matches the segment with (aiohttp's default: any
    # segment), when some segments belong to other routes.
    route_pattern: str | None = None

    def in_route(self, path: str) -> str:
        if self.route_pattern is None:
            return path
        return path.replace(f"{{{self.name}}}", f"{{{self.name}:{self.route_pattern}}}")

    def openapi(self) -> dict[str, Any]:
        doc = {"name": self.name, "in": "path", "required": True}
        schema = {
            key: list(value) if isinstance(value, tuple) else value for key, value in self.schema
        }
        return {**doc, "description": self.description, "schema": schema}


@dataclass(frozen=True)
class DayParam:
    name: str

    def read(self, request: web.Request, default: date) -> date:
        raw = raw_value(request, self.name)
        if raw is None:
            return default
        try:
            if DAY.fullmatch(raw):
                return date.fromisoformat(raw)
        except ValueError:
            pass
        raise invalid([FieldError(self.name, "a day as YYYY-MM-DD")])

    def openapi(self) -> dict[str, Any]:
        return param_doc(self.name, {"type": "string", "format": "date", "maxLength": 10})


# Every query parameter of the API, by operation.
JOBS_STATE = ChoiceParam("state", JOB_STATES)
JOBS_KIND = ChoiceParam("kind", ("enrich", "scrape"))
JOBS_LIMIT = IntParam("limit", 50, 1, 200)
CURSOR = CursorParam()
LEADS_FORMAT = ChoiceParam("format", ("json", "ndjson", "csv"))
LEADS_STATUS = ChoiceParam("status", ("enriched", "failed"))
# ndjson / csv stream everything, or one page of `limit` (the cursor in X-Next-Cursor);
# json answers pages of `limit`, at most LEADS_JSON_PAGE_MAX (a larger limit gets that).
LEADS_STREAM_LIMIT = IntParam("limit", 0, 1, 10**9)
LEADS_JSON_PAGE_DEFAULT = 100
LEADS_JSON_PAGE_MAX = 1000
LEADS_LIMIT_DOC = IntParam(
    "limit",
    LEADS_JSON_PAGE_DEFAULT,
    LEADS_STREAM_LIMIT.minimum,
    LEADS_STREAM_LIMIT.maximum,
    f"json: leads a page (default {LEADS_JSON_PAGE_DEFAULT}, at most {LEADS_JSON_PAGE_MAX}: a "
    "larger limit gets that many); ndjson and csv: one page of `limit` leads (every lead "
    "when absent).",
)
DEAD_LETTERS_JOB = TextParam("job_id", 100)
DEAD_LETTERS_STATE = ChoiceParam("state", ("parked", "replayed"))
DEAD_LETTERS_LIMIT = IntParam("limit", 50, 1, 500)
IDEMPOTENCY_KEY = TextHeader(
    "Idempotency-Key", 200, "A repeated key returns the first job (409: other body)."
)
# Absent or empty: every lead, unless the job has more results than a stream replays
# unasked (events.py); `new`: only those written from now on.
EVENTS_LEADS = ChoiceParam("leads", ("true", "false", "new"))
LAST_EVENT_ID = EventIdHeader()
USAGE_FROM = DayParam("from")
USAGE_TO = DayParam("to")
