"""Request validation: msgspec errors map to fields; ids are kept or assigned uniquely."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import pytest

from services.gateway.deadletters import ReplayRequest
from services.gateway.deliveries import SecretRotation
from services.gateway.problems import Problem
from services.gateway.schemas import EnrichJobRequest, LeadIn
from services.gateway.validation import (
    assign_ids,
    decode_request,
    field_error_from,
    validate_enrich,
)
from services.scraper.sources.base import SourceResult
from shared.messages import LEAD_FIELD_MAX_CHARS, Lead
from shared.netguard import NetGuard


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


def enrich_body(lead: Mapping[str, object], destinations: list[object] | None = None) -> bytes:
    return msgspec.json.encode({"leads": [lead], "destinations": destinations or []})


def test_every_lead_field_has_a_limit_from_the_one_table() -> None:
    assert set(LEAD_FIELD_MAX_CHARS) == set(Lead.__struct_fields__) == set(LeadIn.__struct_fields__)
    assert set(SourceResult.__struct_fields__) == set(Lead.__struct_fields__)


@pytest.mark.parametrize("field", sorted(LEAD_FIELD_MAX_CHARS))
def test_a_lead_field_over_its_limit_is_a_422_naming_it(field: str) -> None:
    limit = LEAD_FIELD_MAX_CHARS[field]
    lead = {"full_name": "Ada Lovelace", field: "a" * limit}
    decode_request(enrich_body(lead), EnrichJobRequest)  # at the limit: accepted
    with pytest.raises(Problem) as problem:
        decode_request(enrich_body({**lead, field: "a" * (limit + 1)}), EnrichJobRequest)
    assert problem.value.status == 422
    assert [e.field for e in problem.value.errors or []] == [f"leads[0].{field}"]


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("report\n", 400),  # `$` matched before the line break: a file named "report\n.csv"
        ("report\r", 400),
        ("rep\tort", 400),
        ("rep\x00ort", 400),
        ("rep\u202eort", 400),  # right-to-left override (a format character)
        ("../report", 400),
        ("reports/q1", 400),
        ("C:report", 400),
        (".hidden", 400),
        ("report.", 422),
        ("report ", 422),
        ("CON", 422),
        ("nul.csv", 422),
        ("Com1.backup", 422),
        ("-report", 422),
        ("r\u00e9port", 422),
    ],
)
async def test_csv_names_must_be_plain_portable_file_names(name: str, status: int) -> None:
    body = decode_request(
        enrich_body({"full_name": "Ada Lovelace"}, [{"type": "csv", "name": name}]),
        EnrichJobRequest,
    )
    with pytest.raises(Problem) as problem:
        await validate_enrich(body, 100, NetGuard(()))
    assert problem.value.status == status
    assert [e.field for e in problem.value.errors or []] == ["destinations[0].name"]


@pytest.mark.parametrize(
    "name", ["report", "Q1 leads_v2.csv", "2024-06.export", "console", "nullable"]
)
async def test_plain_csv_names_are_accepted(name: str) -> None:
    body = decode_request(
        enrich_body({"full_name": "Ada Lovelace"}, [{"type": "csv", "name": name}]),
        EnrichJobRequest,
    )
    assert len(await validate_enrich(body, 100, NetGuard(()))) == 1


def test_every_json_body_is_decoded_the_same_way() -> None:
    """One `decode_request` for every route with a body (the replay body had its own)."""
    assert decode_request(b'{"ids": [1, 2]}', ReplayRequest).ids == [1, 2]
    with pytest.raises(Problem) as problem:
        decode_request(b'{"ids": [0]}', ReplayRequest)
    assert problem.value.status == 422
    assert [e.field for e in problem.value.errors or []] == ["ids[0]"]  # not "body"
    with pytest.raises(Problem) as problem:
        decode_request(b"", SecretRotation)
    assert problem.value.status == 400


def test_a_whole_number_written_with_a_fraction_is_an_integer() -> None:
    """JSON has one number type; JSON Schema's `integer` admits 3.0, so the API does too."""
    assert decode_request(b'{"ids": [1.0, 2]}', ReplayRequest).ids == [1, 2]
    body = b'{"leads": [{"full_name": "Ada"}], "timeout_s": 60.0}'
    assert decode_request(body, EnrichJobRequest).timeout_s == 60
    for bad, field in ((b'{"ids": [1.5]}', "ids[0]"), (b'{"ids": ["1"]}', "ids[0]")):
        with pytest.raises(Problem) as problem:
            decode_request(bad, ReplayRequest)
        assert [e.field for e in problem.value.errors or []] == [field]
    deep = b'{"ids": ' + b"[" * 5000 + b"1.0" + b"]" * 5000 + b"}"
    with pytest.raises(Problem) as problem:  # no recursion, whatever the nesting
        decode_request(deep, ReplayRequest)
    assert problem.value.status == 422


def test_email_policy_is_one_of_three_and_defaults_to_allow_catch_all() -> None:
    body = {"leads": [{"full_name": "Ada Lovelace"}]}
    assert decode_request(msgspec.json.encode(body), EnrichJobRequest).email_policy == (
        "allow_catch_all"
    )
    for policy in ("valid_only", "allow_catch_all", "any"):
        request = decode_request(
            msgspec.json.encode({**body, "email_policy": policy}), EnrichJobRequest
        )
        assert request.email_policy == policy
    with pytest.raises(Problem) as problem:
        decode_request(msgspec.json.encode({**body, "email_policy": "all"}), EnrichJobRequest)
    assert problem.value.status == 422
    assert [e.field for e in problem.value.errors or []] == ["email_policy"]
