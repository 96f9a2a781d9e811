"""Scraped leads are fitted to the lead limits: free text cut, identifiers dropped, long
ids replaced by a stable digest; the page is still taken whole."""

from __future__ import annotations

from typing import Any, cast

import msgspec

from services.scraper.config import SourceSettings
from services.scraper.sources.base import SourceResult, fit_scraped_lead
from services.scraper.sources.http import SearchApiSource
from shared.messages import LEAD_FIELD_MAX_CHARS as LIMITS


def test_free_text_is_cut_identifiers_dropped_and_long_ids_digested() -> None:
    result = SourceResult(
        id="i" * (LIMITS["id"] + 1),
        full_name="Ada Lovelace",
        title="t" * 10_000,
        company="," * 20_000,
        linkedin_url="https://www.linkedin.com/in/" + "a" * LIMITS["linkedin_url"],
        email="a" * 600 + "@acme.com",
        phone="1" * 65,
        location="London",
    )
    lead, changed = fit_scraped_lead(result)
    assert lead.title == "t" * LIMITS["title"]
    assert lead.company == "," * LIMITS["company"]
    assert (lead.linkedin_url, lead.email, lead.phone) == (None, None, None)
    assert (lead.full_name, lead.location) == ("Ada Lovelace", "London")
    assert lead.id.startswith("sha256:")
    assert len(lead.id) <= LIMITS["id"]
    assert fit_scraped_lead(result)[0].id == lead.id  # a page fetched again: same lead id
    assert set(changed) == {"id", "title", "company", "linkedin_url", "email", "phone"}


def test_leads_within_the_limits_are_unchanged() -> None:
    result = SourceResult(id="src-1", full_name="Ada Lovelace", company="Engines")
    lead, changed = fit_scraped_lead(result)
    assert changed == ()
    assert msgspec.structs.asdict(lead) == msgspec.structs.asdict(result)


def test_a_page_with_over_long_fields_is_taken_with_its_leads_fitted() -> None:
    settings = SourceSettings(
        name="sandbox",
        url="http://127.0.0.1:9",
        keys=("k",),
        rate_per_s=1.0,
        timeout_s=1.0,
        page_size=2,
        cooldown_s=1.0,
    )
    # Parsing a page needs neither a session nor the control stream.
    source = SearchApiSource(settings, cast(Any, None), cast(Any, None))
    body = msgspec.json.encode(
        {
            "results": [
                {"id": "a", "full_name": "Ada Lovelace", "company": "x" * 100_000},
                {"id": "b", "full_name": "Grace Hopper", "shoe_size": 44},
            ],
            "next_cursor": "c2",
        }
    )
    page = source._page(200, body, None)
    assert [lead.id for lead in page.leads] == ["a", "b"]
    assert page.leads[0].company == "x" * LIMITS["company"]
    assert page.next_cursor == "c2"
