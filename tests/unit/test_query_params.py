"""Query parameters decode through typed, bounded readers; /openapi.json states the bounds."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Request
from multidict import CIMultiDict

from services.gateway.openapi import build_openapi
from services.gateway.params import (
    CURSOR,
    DEAD_LETTERS_JOB,
    JOBS_LIMIT,
    LEADS_STREAM_LIMIT,
    USAGE_FROM,
)
from services.gateway.problems import Problem
from services.gateway.queries import MAX_POSITION, decode_cursor, encode_cursor


def request(query: str) -> Request:
    return make_mocked_request("GET", f"/v1/jobs?{query}", headers=CIMultiDict())


def refused_field(read: Any) -> str:
    with pytest.raises(Problem) as problem:
        read()
    assert problem.value.status == 422
    errors = problem.value.errors or []
    return errors[0].field


@pytest.mark.parametrize("position", [MAX_POSITION + 1, 2**64, 10**30, 10**400])
def test_a_cursor_past_64_bit_positions_is_refused_naming_it(position: int) -> None:
    cursor = encode_cursor(position)
    assert refused_field(lambda: CURSOR.read(request(f"cursor={cursor}"))) == "cursor"


def test_cursors_the_api_issues_still_decode() -> None:
    for position in (0, 1, 12345, MAX_POSITION):
        assert decode_cursor(encode_cursor(position)) == position
    assert CURSOR.read(request("cursor=")) is None
    for bad in ("zz", "x" * 5000, encode_cursor(1).replace("c", "C"), "cNmj"):
        assert refused_field(lambda bad=bad: decode_cursor(bad)) == "cursor"


@pytest.mark.parametrize("value", ["0", "201", "-1", "+5", " 5", "1_0", "\u0665", "9" * 5000, "x"])
def test_integers_are_ascii_digits_within_bounds(value: str) -> None:
    assert refused_field(lambda: JOBS_LIMIT.read(request(f"limit={value}"))) == "limit"


def test_integers_in_bounds_and_empty_values() -> None:
    assert JOBS_LIMIT.read(request("limit=200")) == 200
    assert JOBS_LIMIT.read(request("limit=")) == JOBS_LIMIT.default
    assert LEADS_STREAM_LIMIT.read_given(request("limit=")) is None
    assert LEADS_STREAM_LIMIT.read_given(request("limit=7")) == 7


def test_days_are_plain_iso_dates() -> None:
    today = date(2024, 1, 2)
    assert USAGE_FROM.read(request("from=2024-03-04"), today) == date(2024, 3, 4)
    assert USAGE_FROM.read(request("from="), today) == today
    for value in ("20240304", "2024-W10-1", "2024-02-30", "\u0662024-01-01"):
        assert refused_field(lambda v=value: USAGE_FROM.read(request(f"from={v}"), today))


def test_text_is_bounded() -> None:
    assert DEAD_LETTERS_JOB.read(request("job_id=job-1")) == "job-1"
    assert DEAD_LETTERS_JOB.read(request("job_id=" + "j" * 100)) == "j" * 100
    assert refused_field(lambda: DEAD_LETTERS_JOB.read(request("job_id=" + "j" * 101)))


def test_the_document_states_a_bound_for_every_query_parameter() -> None:
    document = build_openapi()
    seen = 0
    for item in document["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["in"] != "query":
                    continue
                seen += 1
                schema = param["schema"]
                bounded = (
                    "enum" in schema
                    or "maxLength" in schema
                    or ("minimum" in schema and "maximum" in schema)
                )
                assert bounded, param
    assert seen >= 12
    jobs = {p["name"]: p for p in document["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert jobs["limit"]["schema"]["maximum"] == JOBS_LIMIT.maximum
    assert jobs["cursor"]["schema"]["maxLength"] == len(encode_cursor(MAX_POSITION))
