"""Domain code raises domain errors; the error middleware alone decides the answer to each.

Each error keeps the answer it had when the domain raised `Problem` itself (status,
detail, headers, problem members), and `Problem(` is written only in the HTTP layer that
problems.py names.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway import errors
from services.gateway.problems import PROBLEM_BASE, problem_middleware

ROOT = Path(__file__).resolve().parents[2]
# The gateway's HTTP layer (problems.py's docstring): handlers, the table, decoding.
HTTP_LAYER = {
    "services/gateway/problems.py",
    "services/gateway/operations.py",
    "services/gateway/routes.py",
    "services/gateway/jobcontrol.py",
    "services/gateway/deadletters.py",
    "services/gateway/usage.py",
    "services/gateway/events.py",
    "services/gateway/dashboard.py",
    "services/gateway/auth.py",
    "services/gateway/params.py",
    "services/gateway/validation.py",
    "services/gateway/queries.py",
    "services/gateway/schedules.py",
    "services/gateway/daily.py",
    # An upload's multipart body and its lead file, decoded (like validation.py's bodies).
    "services/gateway/upload.py",
    "services/gateway/leadlines.py",
}
DOMAIN = {
    "services/gateway/submit.py",
    "services/gateway/newjobs.py",
    "services/gateway/deliveries.py",
    "services/gateway/errors.py",
}

CASES: list[tuple[errors.DomainError, int, str, dict[str, str], dict[str, Any]]] = [
    (errors.JobNotFound("job_x"), 404, "no job 'job_x'", {}, {}),
    (errors.ScheduleNotFound("sch_x"), 404, "no schedule 'sch_x'", {}, {}),
    (
        errors.QuotaExceeded(quota=10, used=8, needed=5, retry_after_s=60),
        429,
        "daily quota of 10 leads: 8 used today, this job needs 5",
        {"Retry-After": "60"},
        {"quota": 10, "used": 8},
    ),
    (
        errors.IdempotencyConflict("job_a"),
        409,
        "this Idempotency-Key was used with a different request body",
        {},
        {"job_id": "job_a"},
    ),
    (
        errors.CsvInUse(index=1, file_name="out.csv", job_id="job_b"),
        409,
        "destinations[1].name: out.csv is being written by job job_b",
        {},
        {"job_id": "job_b"},
    ),
    (
        errors.BadDependency("an enrich job can depend on a scrape job only"),
        422,
        "depends_on: an enrich job can depend on a scrape job only",
        {},
        {
            "errors": [
                {"field": "depends_on", "message": "an enrich job can depend on a scrape job only"}
            ]
        },
    ),
    (
        errors.BadDependency("no job 'job_z'", missing=True),
        404,
        "depends_on: no job 'job_z'",
        {},
        {"errors": [{"field": "depends_on", "message": "no job 'job_z'"}]},
    ),
    (errors.JobFinished("job_c", "failed"), 409, "job job_c is already failed", {}, {}),
    (
        errors.NothingToCancel("job_d"),
        409,
        "job job_d is already completed and has no pending deliveries",
        {},
        {},
    ),
    (
        errors.JobUnfinished("job_e", "running"),
        409,
        "job job_e is running; cancel it before deleting it",
        {},
        {},
    ),
    (
        errors.JobNotPaused("job_p", "completed"),
        409,
        "job job_p is completed, not paused: nothing to resume",
        {},
        {},
    ),
    (
        errors.JobNotFinished("job_r", "running"),
        409,
        "job job_r is running: only a finished job can be run again",
        {},
        {},
    ),
    (errors.DestinationNotFound("job_f", "7"), 404, "job job_f has no destination 7", {}, {}),
    (
        errors.NotAWebhook("job_g", 1, "csv"),
        404,
        "job job_g has no webhook destination 1: it is a csv destination",
        {},
        {},
    ),
    (errors.NoParkedDeadLetters(), 404, "no parked dead letters match", {}, {}),
    (
        errors.NotSent("could not queue the job's tasks: down", job_id="job_h"),
        503,
        "could not queue the job's tasks: down",
        {"Retry-After": "5"},
        {"job_id": "job_h"},
    ),
    (
        errors.TooManyStreams(cap="tenant", held=3, retry_after_s=42),
        429,
        "your tenant has 3 event streams open on this gateway, the most "
        "LEADFLOW_SSE_MAX_STREAMS_PER_TENANT allows; close one; retry after 42 s",
        {"Retry-After": "42"},
        {"type": PROBLEM_BASE + "too-many-streams", "title": "Too many event streams"},
    ),
]


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def refuse(request: web.Request) -> web.Response:
        raise CASES[int(request.match_info["n"])][0]

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/{n}", refuse)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.parametrize("n", range(len(CASES)), ids=[type(c[0]).__name__ for c in CASES])
async def test_each_domain_error_is_answered_as_the_domain_answered_it_before(
    client: TestClient[web.Request, web.Application], n: int
) -> None:
    _, status, detail, headers, members = CASES[n]
    async with client.get(f"/{n}") as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        for name, value in headers.items():
            assert response.headers[name] == value
        problem = await response.json(content_type=None)
    assert problem["status"] == status
    assert problem["detail"] == detail
    for name, value in members.items():
        assert problem[name] == value


def test_every_domain_error_has_an_answer() -> None:
    raised = {type(case[0]) for case in CASES}
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.DomainError)
        and value is not errors.DomainError
    }
    assert defined == raised


def test_problems_are_written_only_in_the_http_layer() -> None:
    writers = {
        str(path.relative_to(ROOT))
        for folder in ("services", "shared")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"\bProblem\(|\binvalid\(", path.read_text())
    }
    assert writers <= HTTP_LAYER, writers - HTTP_LAYER
    for module in DOMAIN:
        text = (ROOT / module).read_text()
        assert "services.gateway.problems" not in text, module
