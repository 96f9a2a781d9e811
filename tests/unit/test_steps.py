"""Local enrichment steps."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.enricher.draft import LeadDraft
from services.enricher.steps import run_final_steps, run_local_steps
from services.enricher.steps.company import clean_company_name
from services.enricher.steps.domain import normalise_domain
from services.enricher.steps.emails import email_candidates
from services.enricher.steps.names import normalise_case, parse_full_name
from shared.messages import Lead


def draft(**fields: str) -> LeadDraft:
    return run_local_steps(LeadDraft.of(Lead(id="x", **fields)))


@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Ada Lovelace", "Ada", "Lovelace"),
        ("Dr. Ada Lovelace, PhD", "Ada", "Lovelace"),
        ("Lovelace, Ada", "Ada", "Lovelace"),
        ("Ludwig van Beethoven", "Ludwig", "van Beethoven"),
        ("Grace Brewster Murray Hopper", "Grace", "Hopper"),
        ("Mr John Smith Jr.", "John", "Smith"),
        ("Cher", "Cher", None),
        ("🚀 Ada Lovelace", "Ada", "Lovelace"),
    ],
)
def test_full_names_split(full: str, first: str, last: str | None) -> None:
    assert parse_full_name(full) == (first, last)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("ADA LOVELACE", "Ada Lovelace"),
        ("sean o'brien", "Sean O'Brien"),
        ("McDonald", "McDonald"),
        ("jean-luc picard", "Jean-Luc Picard"),
        ("ludwig VAN beethoven", "ludwig VAN beethoven"),
    ],
)
def test_name_case_is_fixed_only_when_all_one_case(raw: str, clean: str) -> None:
    assert normalise_case(raw) == clean


def test_names_step_fills_first_and_last_and_records_the_source() -> None:
    lead = draft(full_name="GRACE HOPPER")
    assert (lead.get("first_name"), lead.get("last_name")) == ("Grace", "Hopper")
    assert lead.get("full_name") == "Grace Hopper"
    assert lead.sources["first_name"] == "step:names"


def test_given_first_and_last_are_kept() -> None:
    lead = draft(full_name="Ada King", first_name="Augusta", last_name="Lovelace")
    assert (lead.get("first_name"), lead.get("last_name")) == ("Augusta", "Lovelace")
    assert lead.sources["first_name"] == "input"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Analytical Engines Ltd", "Analytical Engines"),
        ("Globex Inc.", "Globex"),
        ("Umbrella GmbH", "Umbrella"),
        ("Acme Holdings, Inc. Ltd", "Acme Holdings"),
        ("  Hooli   ", "Hooli"),
        ("Co", "Co"),
    ],
)
def test_company_names_lose_legal_suffixes(raw: str, clean: str) -> None:
    assert clean_company_name(raw) == clean


# The regex the company step used before it was made linear (quadratic on long runs of
# separators): the new code must clean every name as it did.
OLD_LEGAL_SUFFIX = re.compile(
    r"[\s,]+(inc|incorporated|llc|l\.l\.c|ltd|limited|gmbh|ag|s\.?a\.?s?|plc|corp|corporation"
    r"|co|company|b\.?v|n\.?v|pty|oy|ab|as|srl|spa|kk)\.?$",
    re.IGNORECASE,
)


def old_clean_company_name(name: str) -> str:
    text = " ".join(name.replace("\u00a0", " ").split()).strip(" ,.-")
    previous = None
    while previous != text:
        previous = text
        stripped = OLD_LEGAL_SUFFIX.sub("", text).strip(" ,.-")
        text = stripped or text
    return text


NAME_PIECES = st.sampled_from(
    [
        " ",
        ",",
        ".",
        "-",
        "\u00a0",
        "\t",
        "a",
        "Acme",
        "S",
        "A",
        "s",
        "V",
        "inc",
        "Inc.",
        "LLC",
        "l.l.c",
        "ltd",
        "Co",
        "company",
        "corp",
        "GmbH",
        "b.v",
        "N.V.",
        "sas",
        "S.A.S.",
        "kk",
        "as",
        "ab",
        "oy",
        "incorporated",
        "Holdings",
    ]
)


@settings(max_examples=2000, derandomize=True, database=None)
@given(pieces=st.lists(NAME_PIECES, max_size=12))
@example(pieces=["Acme", " ", "S.A.S."])
@example(pieces=["Acme", ",", "Inc.", " ", "ltd", "."])
@example(pieces=["-", " ", "Inc"])
@example(pieces=["a", ",", ",", " ", "co", "-", " ", "as"])
def test_company_cleaning_matches_the_former_regex(pieces: list[str]) -> None:
    name = "".join(pieces)
    assert clean_company_name(name) == old_clean_company_name(name)


def test_company_cleaning_of_long_separator_runs_keeps_its_letters() -> None:
    assert clean_company_name("a" + "," * 20_000 + "b") == "a" + "," * 20_000 + "b"
    assert clean_company_name("Acme" + ", Inc." * 4000) == "Acme"


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("https://www.Acme.com/about", "acme.com"),
        ("acme.co.uk", "acme.co.uk"),
        ("not a domain", None),
        ("http://localhost:8080", None),
    ],
)
def test_domains_are_normalised(raw: str, domain: str | None) -> None:
    assert normalise_domain(raw) == domain


def test_domain_comes_from_a_work_email_not_a_free_one() -> None:
    assert draft(full_name="A B", email="a.b@initech.com").get("company_domain") == "initech.com"
    assert draft(full_name="A B", email="a.b@gmail.com").get("company_domain") is None


@pytest.mark.parametrize(
    ("title", "seniority", "department"),
    [
        ("VP Engineering", "vp", "engineering"),
        ("Chief Technology Officer", "c_level", "engineering"),
        ("Head of Sales", "head", "sales"),
        ("Co-Founder & CEO", "founder", "executive"),
        ("Senior Data Scientist", "senior", "data"),
        ("Marketing Manager", "manager", "marketing"),
        ("Recruiter", "individual_contributor", "hr"),
    ],
)
def test_titles_classify(title: str, seniority: str, department: str) -> None:
    lead = draft(full_name="A B", title=title)
    assert (lead.get("seniority"), lead.get("department")) == (seniority, department)


def test_email_candidates_follow_common_patterns() -> None:
    lead = draft(full_name="José García", company_domain="acme.com")
    candidates = email_candidates(lead)
    assert candidates[:3] == ["jose.garcia@acme.com", "jgarcia@acme.com", "jose@acme.com"]
    assert len(candidates) == len(set(candidates))
    assert email_candidates(draft(full_name="Cher", company_domain="acme.com")) == []


def test_final_steps_mark_missing_email_and_offer_candidates() -> None:
    result = run_final_steps(draft(full_name="Ada Lovelace", company_domain="engines.io")).result()
    assert result.email is None
    assert result.email_status == "not_found"
    assert "ada.lovelace@engines.io" in result.email_candidates
