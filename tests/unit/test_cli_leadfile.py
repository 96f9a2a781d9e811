"""Lead files for `leadflow enrich`: CSV, JSON and NDJSON, loose column names, odd files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadflow_cli.errors import UsageError
from leadflow_cli.leadfile import LEAD_FIELDS, read_lead_file
from shared.leadcolumns import field_for

ADA = {"full_name": "Ada Lovelace", "company": "Analytical Engines"}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("Full Name", "full_name"),
        ("name", "full_name"),
        ("full_name", "full_name"),
        ("FULLNAME", "full_name"),
        ("First Name", "first_name"),
        ("surname", "last_name"),
        ("Job Title", "title"),
        ("Company Name", "company"),
        ("Website", "company_domain"),
        ("LinkedIn", "linkedin_url"),
        ("linkedin profile", "linkedin_url"),
        ("LinkedIn Profile URL", "linkedin_url"),
        ("E-mail", "email"),
        ("Email Address", "email"),
        ("Phone Number", "phone"),
        ("City", "location"),
        (" ID ", "id"),
        ("Shoe Size", None),
        ("", None),
    ],
)
def test_column_names_are_matched_loosely(column: str, field: str | None) -> None:
    assert field_for(column) == field


def test_every_api_field_name_maps_to_itself() -> None:
    assert all(field_for(name) == name for name in LEAD_FIELDS)


def test_csv_with_odd_headers_unknown_columns_and_empty_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "leads.csv",
        "Full Name,Job Title,Company Name,LinkedIn,E-mail,Shoe Size\n"
        "Ada Lovelace,Countess, Analytical Engines ,https://www.linkedin.com/in/ada,,37\n"
        ",,,,,\n"
        "\n"
        "Grace Hopper,Rear Admiral,US Navy,,grace@navy.mil,\n",
    )
    result = read_lead_file(path)
    assert result.leads == [
        {
            "full_name": "Ada Lovelace",
            "title": "Countess",
            "company": "Analytical Engines",
            "linkedin_url": "https://www.linkedin.com/in/ada",
        },
        {
            "full_name": "Grace Hopper",
            "title": "Rear Admiral",
            "company": "US Navy",
            "email": "grace@navy.mil",
        },
    ]
    assert result.origins == ["line 2", "line 5"]
    assert result.skipped_empty == 1
    assert result.ignored_columns == ["Shoe Size"]
    assert result.warnings() == [
        "ignoring columns that are not lead fields: 'Shoe Size'",
        "skipping 1 row(s) with no lead field filled in",
    ]


def test_csv_with_a_bom_semicolons_and_a_quoted_line_break(tmp_path: Path) -> None:
    content = 'Name;Company;Location\n"Ada Lovelace";"Engines; Ltd";"London\nUK"\nAlan Turing;;\n'
    result = read_lead_file(write(tmp_path, "excel.csv", b"\xef\xbb\xbf" + content.encode()))
    assert result.leads == [
        {"full_name": "Ada Lovelace", "company": "Engines; Ltd", "location": "London\nUK"},
        {"full_name": "Alan Turing"},
    ]
    assert result.origins == ["line 3", "line 4"]
    assert result.warnings() == []


def test_csv_in_windows_1252_is_read_with_a_note(tmp_path: Path) -> None:
    result = read_lead_file(write(tmp_path, "old.csv", "name\nChloé Zoë\n".encode("cp1252")))
    assert result.leads == [{"full_name": "Chloé Zoë"}]
    assert "cp1252" in result.warnings()[0]


def test_two_columns_for_one_field_keep_the_first(tmp_path: Path) -> None:
    result = read_lead_file(write(tmp_path, "two.csv", "Name,Full Name\nAda,Ada Lovelace\n"))
    assert result.leads == [{"full_name": "Ada"}]
    assert "'Name'" in result.warnings()[0]


def test_json_array_and_leads_object(tmp_path: Path) -> None:
    leads = [{"Full Name": "Ada Lovelace", "Company": "Analytical Engines", "score": 9}, {}]
    as_array = read_lead_file(write(tmp_path, "a.json", json.dumps(leads)))
    as_object = read_lead_file(write(tmp_path, "b.json", json.dumps({"leads": leads}, indent=2)))
    for result in (as_array, as_object):
        assert result.leads == [ADA]
        assert result.origins == ["item 1"]
        assert result.ignored_columns == ["score"]
        assert result.skipped_empty == 1


def test_json_numbers_become_text_and_nulls_are_dropped(tmp_path: Path) -> None:
    lead = {"name": "Ada", "phone": 4420794600, "email": None}
    result = read_lead_file(write(tmp_path, "n.json", json.dumps([lead])))
    assert result.leads == [{"full_name": "Ada", "phone": "4420794600"}]


def test_ndjson_skips_blank_lines_and_names_lines(tmp_path: Path) -> None:
    content = "\n".join(json.dumps(lead) for lead in (ADA, {"E-mail": "grace@navy.mil"}))
    path = write(tmp_path, "leads.ndjson", content.replace("\n", "\n\n") + "\n")
    result = read_lead_file(path)
    assert result.leads == [ADA, {"email": "grace@navy.mil"}]
    assert result.origins == ["line 1", "line 3"]


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("leads", json.dumps([ADA]), "json"),
        ("leads", json.dumps(ADA) + "\n" + json.dumps(ADA) + "\n", "ndjson"),
        ("leads.txt", "name,company\nAda Lovelace,Analytical Engines\n", "csv"),
    ],
)
def test_the_format_of_a_file_without_a_known_extension_is_recognised(
    tmp_path: Path, name: str, content: str, kind: str
) -> None:
    result = read_lead_file(write(tmp_path, name, content))
    assert result.leads[0] == ADA, kind


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.csv", None, "cannot read"),
        ("empty.csv", "", "no header row"),
        ("header-only.csv", "name,email\n", "no leads"),
        ("unknown.csv", "foo,bar\n1,2\n", "none of the columns"),
        ("broken.json", '{"leads": [', "not valid JSON"),
        ("scalar.json", '"ada"', "expected a JSON array"),
        ("items.json", "[1, 2]", "item 1: expected a JSON object"),
        ("nested.json", '[{"name": {"first": "Ada"}}]', "item 1: full_name must be text"),
        ("broken.ndjson", '{"name": "Ada"}\n{oops\n', "line 2: not valid JSON"),
        ("empty.ndjson", "\n\n", "no leads"),
    ],
)
def test_unusable_files_are_one_clear_error(
    tmp_path: Path, name: str, content: str | None, expected: str
) -> None:
    path = tmp_path / name if content is None else write(tmp_path, name, content)
    with pytest.raises(UsageError) as error:
        read_lead_file(path)
    assert expected in error.value.message
    assert name in error.value.message
    assert "\n" not in error.value.message
