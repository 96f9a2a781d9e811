"""CSV cells and headers a spreadsheet would run as formulas are neutralised (OWASP)."""

from __future__ import annotations

import csv
import io

import msgspec
import pytest

from shared.messages import ResultLead
from shared.results import encode_csv, field_map, neutralise_formula, project

FORMULAS = [
    '=HYPERLINK("http://evil.example","click")',
    "+1+2",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1",
    "\r=1",
    "\uff1dHYPERLINK(1)",
]


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


@pytest.mark.parametrize("value", FORMULAS)
def test_a_cell_starting_like_a_formula_gets_a_leading_quote(value: str) -> None:
    lead = ResultLead(id="l1", company=value, full_name="Ada Lovelace")
    fields = {"id": "id", "company": "company", "full_name": "full_name"}
    header, row = rows_of(encode_csv([lead], fields, header=True))
    assert header == ["id", "company", "full_name"]
    assert row == ["l1", "'" + value, "Ada Lovelace"]


def test_header_names_from_a_fields_mapping_are_neutralised_too() -> None:
    fields = {"=cmd|' /C calc'!A0": "company", "Name": "full_name"}
    (header,) = rows_of(encode_csv([], fields, header=True))
    assert header == ["'=cmd|' /C calc'!A0", "Name"]


def test_ordinary_values_are_unchanged() -> None:
    for value in ("Acme", "ada@acme.com", "'quoted", "a=b", "+", "")[:-2]:
        assert neutralise_formula(value) == value
    assert neutralise_formula("+") == "'+"
    assert neutralise_formula("") == ""
    lead = ResultLead(id="l1", email_candidates=["a@b.io"], sources={"email": "=x"})
    (row,) = rows_of(encode_csv([lead], {"c": "email_candidates", "s": "sources"}, header=False))
    assert row == ['["a@b.io"]', '{"email":"=x"}']  # JSON text starts with [ or {


def test_a_carriage_return_inside_a_cell_stays_inside_it() -> None:
    lead = ResultLead(id="l1", company="Acme\rInc", title="CTO")
    data = encode_csv([lead], {"company": "company", "title": "title"}, header=True)
    assert rows_of(data) == [["company", "title"], ["Acme\rInc", "CTO"]]


def test_json_keeps_the_original_value() -> None:
    lead = ResultLead(id="l1", company="=1+2")
    assert project(lead, field_map(None))["company"] == "=1+2"
    assert msgspec.json.decode(msgspec.json.encode(lead))["company"] == "=1+2"
