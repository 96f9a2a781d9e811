"""A job through a waterfall of the four vendor emulations (Hunter, People Data Labs, Apollo,
Dropcontact), real processes and the real broker: every lead gets one outcome, each lead's
email is the one the waterfall order gives, and the credits the sandbox charged equal what
the vendors' billing rules give for these leads, computed here from the sandbox's world."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from devtools.stack import Stack
from services.sandbox.vendors import person
from tests.helpers import Api

pytestmark = pytest.mark.e2e

ORDER = ("hunter", "pdl", "apollo", "dropcontact")
FIRST = ("Ada", "Grace", "Alan", "Linus", "Barbara", "Dennis", "Frances", "Guido", "Radia", "Ken")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Ritchie", "Allen", "Perlman")
COMPANIES = ("Analytical Engines", "Harmonic Labs", "Northwind Traders", "Blue Harbor")
COVERAGE = 0.5  # the sandbox's default for a vendor it has no coverage knob for


def leads() -> list[dict[str, Any]]:
    return [
        {
            "id": f"v{i}",
            "first_name": FIRST[i % len(FIRST)],
            "last_name": LAST[(i // len(FIRST)) % len(LAST)],
            "company": COMPANIES[i % len(COMPANIES)],
        }
        for i in range(60)
    ]


def expected(lead: dict[str, Any]) -> tuple[str | None, Counter[str]]:
    """The email the waterfall ends with, and each vendor's charge, by the vendors' rules."""
    first, last, company = lead["first_name"], lead["last_name"], lead["company"]
    email: str | None = None
    domain: str | None = None
    credits: Counter[str] = Counter()
    for vendor in ORDER:
        if email and domain:
            break  # complete: nobody further is asked
        found = person(vendor, COVERAGE, first, last, None if domain else company, domain)
        verdict = found.verdict
        # Each vendor's status for the address, normalised; the job's default email_policy
        # (allow_catch_all) accepts valid and accept_all only: the waterfall goes on past
        # an unknown one (PDL verifies nothing; Apollo says "unverified" for catch-all).
        if vendor == "hunter":  # a search credit per email found (it returns no invalid one)
            status = verdict if verdict in ("valid", "accept_all", "unknown") else None
            credits[vendor] += status is not None
        elif vendor in ("pdl", "apollo"):  # a credit per person matched
            credits[vendor] += found.known
            status = None if verdict in (None, "invalid") else "unknown"
            if vendor == "apollo" and verdict == "valid":
                status = "valid"
        else:  # Dropcontact: a credit per verified (nominative) email returned
            credits[vendor] += verdict == "valid"
            status = verdict if verdict in ("valid", "accept_all") else None
        answer = found.email if status in ("valid", "accept_all") else None
        email = email or answer
        domain = domain or found.domain
    return email, credits


@pytest.fixture
def vendor_stack(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory(
        {
            "LEADFLOW_PROVIDERS": ",".join(ORDER),
            "LEADFLOW_PROVIDER_DROPCONTACT_POLL_S": "0.05",
        }
    )
    stack.start()
    return stack


async def test_four_vendor_waterfall_pays_what_the_vendors_charge(
    vendor_stack: Stack, http: aiohttp.ClientSession
) -> None:
    api = Api(vendor_stack.url("gateway"), http)
    sandbox = vendor_stack.url("sandbox")
    sent = leads()

    job = await api.submit({"leads": sent})
    status = await api.wait_job(job["job_id"], timeout_s=180)
    results = await api.all_leads(job["job_id"])
    async with http.get(f"{sandbox}/_sandbox/stats") as response:
        stats = await response.json()

    assert status["state"] == "completed"
    assert status["progress"]["done"] == len(sent)
    assert sorted(r["id"] for r in results) == sorted(lead["id"] for lead in sent)
    want = {lead["id"]: expected(lead) for lead in sent}
    by_id = {r["id"]: r for r in results}
    for lead_id, (email, _) in want.items():
        assert by_id[lead_id]["email"] == email, (lead_id, by_id[lead_id])
    charged: Counter[str] = Counter()
    for _, credits in want.values():
        charged.update(credits)
    assert sum(charged.values()) > 0  # the leads exercise the billing rules
    assert stats["credits"] == {v: n for v, n in charged.items() if n}
    # Each vendor was asked, Dropcontact by submit then poll.
    assert set(stats["vendor_requests"]) == set(ORDER)
    assert stats["rate_limited"] == {}


async def test_the_verifier_checks_what_pdl_finds_and_the_policy_judges_its_verdict(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory({"LEADFLOW_PROVIDERS": "pdl", "LEADFLOW_VERIFIER": "hunter"})
    stack.start()
    api = Api(stack.url("gateway"), http)
    sent = leads()[:40]

    job = await api.submit({"leads": sent, "email_policy": "valid_only"})
    status = await api.wait_job(job["job_id"], timeout_s=120)
    by_id = {r["id"]: r for r in await api.all_leads(job["job_id"])}
    async with http.get(f"{stack.url('sandbox')}/_sandbox/stats") as response:
        stats = await response.json()

    assert status["state"] == "completed"
    verifications = 0
    for lead in sent:
        found = person(
            "pdl", COVERAGE, lead["first_name"], lead["last_name"], lead["company"], None
        )
        result = by_id[lead["id"]]
        pdl_email = found.email if found.verdict != "invalid" else None  # PDL's own rule
        if pdl_email is None:
            assert result["email"] is None
            continue
        verifications += found.verdict != "unknown"  # Hunter charges no unknown verdict
        if found.verdict == "valid":
            assert result["email"] == pdl_email
            assert result["email_status"] == "valid"
            assert result["sources"]["email"] == "provider:pdl"
            assert result["sources"]["email_verified_by"] == "provider:hunter"
            assert result["sources"]["email_status_raw"] == "hunter:valid"
        else:  # accept_all or unknown: refused by valid_only, named in sources
            assert result["email"] is None
            assert (
                f"provider:pdl {pdl_email} {found.verdict}" in result["sources"]["email_rejected"]
            )
    assert verifications > 0
    assert stats["credits_detail"].get("hunter", {}).get("verification", 0) == verifications
