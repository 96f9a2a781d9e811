"""Hunter.io API v2: the Email Finder (the waterfall's lookup) and the Email Verifier.

Followed: https://hunter.io/api-documentation/v2 (endpoint `https://api.hunter.io/v2/`,
authentication, the error table, "Email Finder", "Email Verifier"), the credit rules at
https://help.hunter.io/en/articles/1911617-hunter-s-credit-system and the status words at
https://help.hunter.io/en/articles/6103281-what-are-the-possible-verification-statuses-for-an-email

- `GET /v2/email-finder?domain=|company=&first_name=&last_name=|full_name=`; the key goes in
  the `X-API-KEY` header (the docs allow it beside `api_key` and Bearer; a header keeps it
  out of URLs and access logs). One person per request: Hunter has no bulk finder, so the
  leads of a task are asked concurrently under the provider's concurrency limit.
- 200 `{"data": {"email", "score", "domain", "verification": {"status"}}}`. The docs are
  silent on a person not found; an `email` of null, or a 404, are both taken as "not found".
- Errors, as the docs define them: 401 no valid key (parked), **403 rate limit** (a
  cooldown, Retry-After when given), **429 usage limit reached** (out of credits: parked),
  451 the person asked Hunter to stop processing their data (refused, not retried),
  400/422 refused; 202 (verification in progress), 222 (SMTP failure) and 5xx: ask later.
- Rate limits per the docs: Email Finder 15 req/s and 500/min, Email Verifier 10 req/s and
  300/min (set `_RATE_PER_S` accordingly; per-minute windows are the key pools' work).
- Billing: a search credit per email found, a verification credit per verification; no
  credit when no email is found or the verification is unknown.

Status words: the finder's `verification.status` is `valid | accept_all | unknown` (or null:
not verified); the verifier adds `invalid`, `webmail`, `disposable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from services.enricher.draft import LeadDraft
from services.enricher.providers.base import (
    EmailStatus,
    ProviderRejected,
    ProviderUnavailable,
    Reply,
    Verification,
    VerifyReply,
    has_name_and_company,
)
from services.enricher.providers.vendor import (
    Answer,
    VendorProvider,
    decode,
    fields,
    person_name,
)

FINDER_PATH = "/v2/email-finder"
VERIFIER_PATH = "/v2/email-verifier"
STATUSES: dict[str, EmailStatus] = {
    "valid": "valid",
    "accept_all": "accept_all",
    "unknown": "unknown",
    "invalid": "invalid",
    # A free mailbox (Gmail…) says nothing about the person's work address.
    "webmail": "unknown",
    # Self-destructing addresses must not be mailed.
    "disposable": "invalid",
}


class HunterVerificationInfo(msgspec.Struct):
    status: str | None = None


class FinderData(msgspec.Struct):
    email: str | None = None
    score: int | None = None
    domain: str | None = None
    verification: HunterVerificationInfo | None = None


class FinderReply(msgspec.Struct):
    data: FinderData


class VerifierData(msgspec.Struct):
    email: str
    status: str | None = None
    score: int | None = None


class VerifierReply(msgspec.Struct):
    data: VerifierData


_decode_finder = msgspec.json.Decoder(FinderReply).decode
_decode_verifier = msgspec.json.Decoder(VerifierReply).decode


def normalise(raw: str | None) -> EmailStatus:
    return STATUSES.get(raw or "", "unknown")


class HunterProvider(VendorProvider):
    def auth_headers(self, key: str) -> dict[str, str]:
        return {"X-API-KEY": key}

    def can_help(self, draft: LeadDraft) -> bool:
        return has_name_and_company(draft)  # the finder takes no LinkedIn profile

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        first, last, full = person_name(draft.get)
        domain = draft.get("company_domain")
        return {
            "first_name": first,
            "last_name": last,
            "full_name": full,
            # The docs: the domain gives better results, and wins when both are sent.
            "domain": domain,
            "company": None if domain else (draft.get("company_clean") or draft.get("company")),
        }

    per_request = 1  # the email finder takes one person a request

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        return list(await asyncio.gather(*(self._find(d, job_id) for d in drafts)))

    async def _find(self, draft: LeadDraft, job_id: str) -> Reply:
        params = {k: v for k, v in self.query(draft).items() if v}
        try:
            answer = await self.client.request("GET", FINDER_PATH, job_id, params=params)
            if answer.status == 404:
                return {}
            await self._check(answer)
            data = decode(self.name, _decode_finder, answer.body).data
        except (ProviderUnavailable, ProviderRejected) as e:
            return e
        raw = data.verification.status if data.verification else None
        return fields(data.email, normalise(raw), raw, data.domain, data.score)

    async def verify(self, email: str, job_id: str) -> VerifyReply:
        try:
            answer = await self.client.request(
                "GET", VERIFIER_PATH, job_id, params={"email": email}
            )
            if answer.status in (202, 222):  # in progress / SMTP failure: the docs say retry
                return self.client.unavailable(answer)
            await self._check(answer)
            data = decode(self.name, _decode_verifier, answer.body).data
        except (ProviderUnavailable, ProviderRejected) as e:
            return e
        return Verification(
            email=data.email,
            status=normalise(data.status),
            raw_status=data.status,
            score=data.score,
        )

    async def _check(self, answer: Answer) -> None:
        """Raise what a non-200 answer means in Hunter's own words."""
        status = answer.status
        if status == 200:
            return
        if status == 401:
            raise self.client.park("bad_key", answer)
        if status == 429:  # Hunter: "You have reached your usage limit"
            raise self.client.park("out_of_credits", answer)
        if status == 403:  # Hunter: "You have reached the rate limit"
            raise await self.client.throttled(answer)
        if 400 <= status < 500:
            raise self.client.rejected(answer)
        raise self.client.unavailable(answer)
