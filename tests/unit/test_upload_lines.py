"""The streaming reader of uploaded lead files (services/gateway/leadlines.py) and the id
index of an upload's spool (upload.py): leads and problems named by line, whatever the
chunking."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.leadlines import (
    MAX_ERRORS,
    MAX_LINE_CHARS,
    CsvLeads,
    LeadLines,
    NdjsonLeads,
    Parsed,
    lead_reader,
)
from services.gateway.problems import Problem
from services.gateway.upload import IdIndex

URL = "https://www.linkedin.com/in/ada"


def read_all(reader: LeadLines, data: bytes, chunk: int) -> list[Parsed]:
    parsed: list[Parsed] = []
    for i in range(0, len(data), chunk):
        parsed += reader.feed(data[i : i + chunk])
    parsed += reader.feed(b"", final=True)
    reader.finish()
    return parsed


def refusal(reader: LeadLines, data: bytes, chunk: int = 7) -> Problem:
    with pytest.raises(Problem) as caught:
        read_all(reader, data, chunk)
    return caught.value


def errors_of(problem: Problem) -> list[tuple[int | None, str, str]]:
    return [(e.line, e.field, e.message) for e in problem.errors or []]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 100_000])
def test_csv_leads_come_with_their_lines_whatever_the_chunks(chunk: int) -> None:
    data = (
        "\ufeffFull Name;E-mail;LinkedIn URL;Notes\r\n"
        "Ada Lovelace;ada@example.com;;first\r\n"
        '"Smith; John\r\nthe second";;' + URL + ";\r\n"
        "\r\n"
        ";;;only a note\r\n"
        "Grace Hopper;;;"
    ).encode()
    parsed = read_all(CsvLeads("utf-8", 10), data, chunk)
    assert [(line, lead.full_name, lead.email, lead.linkedin_url) for line, lead in parsed] == [
        (2, "Ada Lovelace", "ada@example.com", None),
        (3, "Smith; John\r\nthe second", None, URL),
        (7, "Grace Hopper", None, None),
    ]


@pytest.mark.parametrize("chunk", [1, 5, 100_000])
def test_ndjson_leads_come_with_their_lines(chunk: int) -> None:
    data = b'{"full_name": "Ada"}\n\n  \n{"email": "g@example.com", "id": "g"}'
    parsed = read_all(NdjsonLeads("utf-8", 10), data, chunk)
    assert [(line, lead.id) for line, lead in parsed] == [(1, None), (4, "g")]


def test_every_bad_line_is_named_with_its_field_in_one_answer() -> None:
    data = (
        "full_name,email,linkedin_url,company_domain\n"
        "Ada,ada@example.com,,\n"
        ",not-an-email,,\n"
        "Bob,,https://example.com/x,\n"
        ",,,example.com\n"
        f"{'x' * 501},,,\n"
        '"Dan"x,,,\n'
    ).encode()
    problem = refusal(CsvLeads("utf-8", 10), data)
    assert problem.status == 422
    assert errors_of(problem) == [
        (3, "email", "not an email address"),
        (4, "linkedin_url", "not a LinkedIn profile URL (https://www.linkedin.com/in/<handle>)"),
        (
            5,
            "lead",
            "a lead needs a full_name (or first_name and last_name), a linkedin_url or an email",
        ),
        (6, "full_name", "Expected `str` of length <= 500"),
        (7, "lead", "not readable as CSV: ',' expected after '\"'"),
    ]
    assert problem.detail.startswith("line 3: email: not an email address (and 4 more)")


def test_ndjson_lines_that_are_no_lead_are_named() -> None:
    data = b'{"full_name": "A"}\n{"full_name": "B", "notes": 1}\n[1]\n{oops\n{"email": 5}\n'
    assert errors_of(refusal(NdjsonLeads("utf-8", 10), data)) == [
        (2, "notes", "Object contains unknown field `notes`"),
        (3, "lead", "Expected `object`, got `array`"),
        (4, "lead", "not a JSON object: JSON is malformed: object keys must be strings (byte 1)"),
        (5, "email", "Expected `str | null`, got `int`"),
    ]


def test_only_the_first_errors_are_listed_but_all_are_counted() -> None:
    data = b"email\n" + b"bad\n" * (MAX_ERRORS + 50)
    problem = refusal(CsvLeads("utf-8", 10_000), data, chunk=1000)
    assert len(problem.errors or []) == MAX_ERRORS
    assert f"(and {MAX_ERRORS + 49} more); the first {MAX_ERRORS} listed" in problem.detail


def test_one_lead_too_many_stops_the_reading_at_its_line() -> None:
    data = b"full_name\n" + b"Ada\n" * 4
    reader = CsvLeads("utf-8", 3)
    problem = refusal(reader, data, chunk=4)
    assert problem.status == 413
    assert errors_of(problem) == [(5, "lead", "more than 3 leads; an upload takes at most that")]


def test_a_header_without_a_lead_field_is_line_1() -> None:
    problem = refusal(CsvLeads("utf-8", 10), b"notes,amount\nx,1\n")
    assert [(e.line, e.field) for e in problem.errors or []] == [(1, "header")]


def test_an_endless_line_is_refused_before_it_fills_memory() -> None:
    reader = NdjsonLeads("utf-8", 10)
    reader.feed(b'{"full_name": "A"}\n')

    def feed_a_long_line() -> None:
        for _ in range(MAX_LINE_CHARS // 1000 + 2):
            reader.feed(b"x" * 1000)

    with pytest.raises(Problem) as caught:
        feed_a_long_line()
    assert errors_of(caught.value) == [(2, "lead", f"longer than {MAX_LINE_CHARS} characters")]


def test_a_quoted_field_never_closed_is_refused() -> None:
    problem = refusal(CsvLeads("utf-8", 10), b'full_name\n"Ada\nLovelace\n')
    assert errors_of(problem) == [
        (2, "lead", "a quoted field is not closed by the end of the file")
    ]
    reader = CsvLeads("utf-8", 10)
    reader.feed(b'full_name\n"Ada\n')
    with pytest.raises(Problem) as caught:
        reader.feed(b"y" * 1000 + b"\n" * 1 + b"z" * (MAX_LINE_CHARS - 500) + b"\n")
    assert errors_of(caught.value)[0][:2] == (2, "lead")


def test_text_that_is_not_the_declared_charset_names_its_line() -> None:
    data = "full_name\nAda\nJosé\n".encode("latin-1")
    problem = refusal(CsvLeads("utf-8", 10), data, chunk=100)
    assert [(e.line, e.field) for e in problem.errors or []] == [(3, "lead")]
    parsed = read_all(CsvLeads("latin-1", 10), data, 100)
    assert [lead.full_name for _, lead in parsed] == ["Ada", "José"]


def test_an_empty_file_has_no_leads() -> None:
    problem = refusal(NdjsonLeads("utf-8", 10), b"\n\n")
    assert errors_of(problem) == [(2, "lead", "no leads in the file")]


def test_the_part_type_chooses_the_reader() -> None:
    assert isinstance(lead_reader("text/csv", None, 1), CsvLeads)
    assert isinstance(lead_reader("application/x-ndjson", "utf-8", 1), NdjsonLeads)
    # Untyped, or typed as any file: its name says.
    assert isinstance(lead_reader("", None, 1, "export.CSV"), CsvLeads)
    assert isinstance(lead_reader("application/octet-stream", None, 1, "a.jsonl"), NdjsonLeads)
    for media, name in (("application/pdf", "a.csv"), ("", "leads.xlsx"), ("", None)):
        with pytest.raises(Problem) as caught:
            lead_reader(media, None, 1, name)
        assert caught.value.status == 415


def test_the_id_index_finds_duplicates_across_batches_and_in_one(tmp_path: Path) -> None:
    index = IdIndex(tmp_path / "ids.sqlite")
    assert index.taken(["a"]) == set()  # nothing given yet: no file either
    assert index.add([("a", 2), ("b", 3)]) == []
    assert index.add([("c", 4), ("a", 5), ("c", 6)]) == [(5, "a", 2), (6, "c", 4)]
    assert index.taken(["a", "lead-1", "c"]) == {"a", "c"}
    index.close()
