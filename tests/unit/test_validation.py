"""Request validation: msgspec errors map to fields; ids are kept or assigned uniquely."""

from __future__ import annotations

import pytest

from services.gateway.problems import Problem
from services.gateway.schemas import EnrichJobRequest, LeadIn
from services.gateway.validation import assign_ids, decode_request, field_error_from


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("Expected `str`, got `int` - at `$.leads[3].full_name`", "leads[3].full_name"),
        ("Object missing required field `url` - at `$.destinations[0]`", "destinations[0].url"),
        ("Object contains unknown field `x` - at `$.leads[0]`", "leads[0].x"),
        ("Object missing required field `leads`", "leads"),
        ("Expected `object`, got `array`", "body"),
    ],
)
def test_msgspec_errors_name_the_field(message: str, field: str) -> None:
    assert field_error_from(message).field == field


def test_client_ids_are_kept_and_missing_ones_assigned_without_collision() -> None:
    leads = [
        LeadIn(id="lead-2", full_name="A B"),
        LeadIn(full_name="C D"),
        LeadIn(full_name=" E F "),
    ]
    assigned = assign_ids(leads)
    assert [lead.id for lead in assigned] == ["lead-2", "lead-2-2", "lead-3"]
    assert assigned[2].full_name == "E F"


def test_unparseable_body_is_a_400_problem() -> None:
    with pytest.raises(Problem) as problem:
        decode_request(b"{nope", EnrichJobRequest)
    assert problem.value.status == 400
