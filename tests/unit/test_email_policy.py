"""email_policy: which found emails end the waterfall, the verifier's check of emails whose
status is missing or unknown, and what `sources` tells of each email (fake providers and a
fake verifier behind our own interfaces; the vendors' status words are the adapters' and
are tested with their recorded answers in test_vendor_adapters.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.enricher.cache import ProviderCache
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import ProviderUnavailable, Verification, VerifyReply
from services.enricher.providers.http import PersonMatch, fields_of
from services.enricher.steps import run_local_steps
from services.enricher.waterfall import Waterfall
from shared.health import Metrics
from shared.jobs import EmailPolicy
from shared.messages import Lead
from tests.unit.test_waterfall import FakeProvider


@dataclass
class FakeVerifier:
    name: str
    verdicts: dict[str, str]
    down: bool = False
    calls: int = 0

    async def verify(self, email: str, job_id: str) -> VerifyReply:
        self.calls += 1
        if self.down:
            return ProviderUnavailable(f"{self.name}: HTTP 503", retry_after_s=2)
        status = self.verdicts[email]
        return Verification(email=email, status=status, raw_status=f"raw-{status}", score=77)  # type: ignore[arg-type]


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[ProviderCache]:
    cache = ProviderCache(tmp_path / "cache.db", ttl_s=3600)
    await cache.open()
    yield cache
    await cache.close()


def lead() -> LeadDraft:
    return run_local_steps(LeadDraft.of(Lead(id="l1", full_name="Ada Lovelace", company="Engines")))


def found(email: str, status: str | None) -> dict[str, str]:
    reply = {"email": email, "company_domain": "engines.io"}
    if status is not None:
        reply["email_status"] = status
        reply["email_status_raw"] = f"word-{status}"
    return reply


def waterfall(
    cache: ProviderCache, *providers: FakeProvider, verifier: FakeVerifier | None = None
) -> Waterfall:
    return Waterfall(list(providers), cache, ProviderMetrics(Metrics()), verifier)


@pytest.mark.parametrize(
    ("policy", "first_status", "email"),
    [
        ("allow_catch_all", "accept_all", "first@engines.io"),
        ("valid_only", "accept_all", "second@engines.io"),
        ("any", "unknown", "first@engines.io"),
        ("allow_catch_all", "unknown", "second@engines.io"),
        ("allow_catch_all", None, "second@engines.io"),  # no status: unknown
        ("any", "invalid", "second@engines.io"),  # never accepted
    ],
)
async def test_the_policy_decides_whether_the_next_provider_is_asked(
    cache: ProviderCache, policy: EmailPolicy, first_status: str | None, email: str
) -> None:
    first = FakeProvider("alpha", found("first@engines.io", first_status))
    second = FakeProvider("beta", found("second@engines.io", "valid"))
    draft = lead()

    [result] = await waterfall(cache, first, second).run([draft], {}, "job-1", "acme", policy)

    assert draft.get("email") == email
    assert second.calls == (0 if email.startswith("first") else 1)
    assert result.errors == []
    if email.startswith("second"):
        assert draft.sources["email"] == "provider:beta"
        assert draft.get("email_status") == "valid"
        assert "email_rejected" not in draft.sources  # an email was accepted in the end


async def test_rejected_candidates_are_named_when_no_email_is_accepted(
    cache: ProviderCache,
) -> None:
    first = FakeProvider("alpha", found("a@engines.io", "unknown"))
    second = FakeProvider("beta", found("b@engines.io", "accept_all"))
    draft = lead()

    await waterfall(cache, first, second).run([draft], {}, "job-1", "acme", "valid_only")

    assert draft.get("email") is None
    assert draft.sources["email_rejected"] == (
        "provider:alpha a@engines.io unknown; provider:beta b@engines.io accept_all"
    )


async def test_the_verifier_checks_unknown_emails_and_sources_tell_who_did_what(
    cache: ProviderCache,
) -> None:
    first = FakeProvider("alpha", found("a@engines.io", "unknown"))
    second = FakeProvider("beta", found("b@engines.io", "valid"))
    verifier = FakeVerifier("hunter", {"a@engines.io": "valid"})
    draft = lead()

    [result] = await waterfall(cache, first, second, verifier=verifier).run(
        [draft], {}, "job-1", "acme", "allow_catch_all"
    )

    assert draft.get("email") == "a@engines.io"
    assert draft.get("email_status") == "valid"
    assert second.calls == 0
    assert verifier.calls == 1
    assert result.calls == {"alpha": 1, "hunter": 1}
    assert draft.sources["email"] == "provider:alpha"
    assert draft.sources["email_status"] == "provider:hunter"
    assert draft.sources["email_verified_by"] == "provider:hunter"
    assert draft.sources["email_status_raw"] == "hunter:raw-valid"
    assert draft.sources["email_score"] == "77"


async def test_a_verdict_is_paid_once_across_retries_and_jobs(cache: ProviderCache) -> None:
    first = FakeProvider("alpha", found("a@engines.io", "unknown"))
    verifier = FakeVerifier("hunter", {"a@engines.io": "invalid"})
    flow = waterfall(cache, first, verifier=verifier)
    draft = lead()
    [result] = await flow.run([draft], {}, "job-1", "acme", "any")
    assert draft.get("email") is None  # invalid: never accepted, whatever the policy
    assert "verified by hunter" in draft.sources["email_rejected"]

    again = lead()
    prior = {"l1": list(result.answers.values())}  # a retry carries the answers
    await flow.run([again], prior, "job-1", "acme", "any")
    await flow.run([lead()], {}, "job-2", "acme", "any")  # another job: from the cache
    assert verifier.calls == 1
    assert first.calls == 1


async def test_a_verifier_that_is_down_makes_the_lead_wait(cache: ProviderCache) -> None:
    first = FakeProvider("alpha", found("a@engines.io", "unknown"))
    verifier = FakeVerifier("hunter", {}, down=True)
    draft = lead()

    [result] = await waterfall(cache, first, verifier=verifier).run(
        [draft], {}, "job-1", "acme", "allow_catch_all"
    )

    assert draft.get("email") is None
    assert result.errors == ["hunter: HTTP 503"]
    assert result.retry_after_s == 2


def test_leadflow_protocol_words_are_normalised_and_kept_raw() -> None:
    assert fields_of(PersonMatch(email="a@b.io", email_status="risky")) == {
        "email": "a@b.io",
        "email_status": "accept_all",
        "email_status_raw": "risky",
    }
    assert fields_of(PersonMatch(email="a@b.io"))["email_status"] == "unknown"
