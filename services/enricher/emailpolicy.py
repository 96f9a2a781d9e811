"""Which found emails a job accepts (`email_policy`), and how each email's story is told in
the result lead's `sources`.

Every adapter normalises its vendor's status words to `valid | accept_all | unknown |
invalid` (providers/base.py `EmailStatus`); a missing status counts as `unknown`.
`valid_only` accepts `valid`; `allow_catch_all` (the default) also `accept_all`; `any` also
`unknown`; `invalid` is never accepted. An email whose status is missing or `unknown` is
checked by the verifier (`LEADFLOW_VERIFIER`) first, when there is one, and judged on its
verdict.

`sources` stays a map of strings (its type never changes); for the email it names:
`email` the provider that found it, `email_status` whoever gave the status (the finder,
or the verifier), `email_verified_by` the verifier when it checked, `email_status_raw` the
status in the vendor's own words (`hunter:accept_all`), `email_score` the vendor's score
when it gives one, and `email_rejected` the candidates the policy refused
(`provider:pdl ada@x.io unknown; ...`) when no email was accepted.
"""

from __future__ import annotations

import msgspec

from services.enricher.draft import LeadDraft
from shared.jobs import DEFAULT_EMAIL_POLICY, EmailPolicy

ACCEPTED: dict[str, frozenset[str]] = {
    "valid_only": frozenset({"valid"}),
    "allow_catch_all": frozenset({"valid", "accept_all"}),
    "any": frozenset({"valid", "accept_all", "unknown"}),
}
NEEDS_VERIFYING = frozenset({"unknown"})


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One email a provider found for a lead, with what is known of it."""

    provider: str
    email: str
    status: str  # normalised; `unknown` when the provider gave none
    raw_status: str | None = None
    score: str | None = None
    verified_by: str | None = None

    @classmethod
    def of(cls, provider: str, found: dict[str, str]) -> Candidate | None:
        email = found.get("email")
        if not email:
            return None
        return cls(
            provider=provider,
            email=email,
            status=found.get("email_status") or "unknown",
            raw_status=found.get("email_status_raw"),
            score=found.get("email_score"),
        )


def accepts(policy: EmailPolicy | str, status: str) -> bool:
    return status in ACCEPTED.get(policy, ACCEPTED[DEFAULT_EMAIL_POLICY])


def take(draft: LeadDraft, candidate: Candidate) -> None:
    """The lead's email is this one: fill it and tell its story in `sources`."""
    found_by = f"provider:{candidate.provider}"
    if not draft.fill("email", candidate.email, found_by):
        return
    draft.values["email_status"] = candidate.status
    told_by = f"provider:{candidate.verified_by}" if candidate.verified_by else found_by
    draft.sources["email_status"] = told_by
    if candidate.verified_by:
        draft.sources["email_verified_by"] = told_by
    if candidate.raw_status:
        vendor = candidate.verified_by or candidate.provider
        draft.sources["email_status_raw"] = f"{vendor}:{candidate.raw_status}"
    if candidate.score:
        draft.sources["email_score"] = candidate.score
    draft.sources.pop("email_rejected", None)


def reject(draft: LeadDraft, candidate: Candidate) -> None:
    """The policy refused this email: keep it in `sources`, the waterfall goes on."""
    entry = f"provider:{candidate.provider} {candidate.email} {candidate.status}"
    if candidate.verified_by:
        entry += f" (verified by {candidate.verified_by})"
    earlier = draft.sources.get("email_rejected")
    if earlier is None or entry not in earlier.split("; "):
        draft.sources["email_rejected"] = f"{earlier}; {entry}" if earlier else entry
