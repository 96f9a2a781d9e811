"""People Data Labs v5 Person Enrichment, through its bulk endpoint.

Followed: https://docs.peopledatalabs.com/docs/bulk-enrichment-api (`POST
https://api.peopledatalabs.com/v5/person/bulk`, 1-100 `requests` of `{"params", "metadata"}`,
the answer a JSON array in request order of `{"status", "likelihood", "data", "metadata"}`),
https://docs.peopledatalabs.com/docs/reference-person-enrichment-api (200 a match, 404 none;
"we charge per match"), https://docs.peopledatalabs.com/docs/authentication (`X-Api-Key`
header), https://docs.peopledatalabs.com/docs/errors (`{"status", "error": {"type",
"message"}}`: 400 invalid_request_error, 401 authentication_error, 402 payment_required,
404 not_found, 429 rate_limit_error, 5xx) and
https://docs.peopledatalabs.com/support/billing/how-credits-work (bulk: 1 credit per match).

- Params per person: `first_name` + `last_name` (or `name`), `company` (PDL takes a name,
  a domain or a website there; the domain when known), `profile` (the LinkedIn URL).
- Fields read: `work_email`, else the first professional address of `emails`;
  `job_company_website` as the company domain. PDL does not verify emails and the docs give
  no status for them: every email is `unknown` (the verifier's work).
- Whole-request errors: 401 parked (bad key), 402 parked (out of credits), 429 a cooldown
  (the docs point at `x-ratelimit-reset`; Retry-After is honoured when sent), other 4xx
  refused, 5xx ask later. Per-person items carry their own status (200/404/other).
- The bulk page recommends at most 80 people per request in practice (above that a 502 may
  come back); this adapter sends at most 80.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from services.enricher.draft import LeadDraft
from services.enricher.providers.base import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    Reply,
    in_chunks,
)
from services.enricher.providers.vendor import (
    Answer,
    VendorProvider,
    decode,
    fields,
    person_name,
)

BULK_PATH = "/v5/person/bulk"
BULK_LIMIT = 80  # the docs' practical ceiling (100 is the hard one)
PROFESSIONAL = frozenset({"current_professional", "professional"})


class PdlEmail(msgspec.Struct):
    address: str | None = None
    type: str | None = None


class PdlPerson(msgspec.Struct):
    work_email: Any = None  # a string, or `true` on plans that hide contact fields
    emails: list[PdlEmail] | None = None
    job_company_website: str | None = None


class PdlError(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class PdlItem(msgspec.Struct):
    status: int
    data: PdlPerson | None = None
    error: PdlError | None = None
    metadata: dict[str, Any] | None = None


_decode_bulk = msgspec.json.Decoder(list[PdlItem]).decode


def email_of(person: PdlPerson) -> str | None:
    if isinstance(person.work_email, str) and person.work_email:
        return person.work_email
    for email in person.emails or []:
        if email.address and email.type in PROFESSIONAL:
            return email.address
    return None


class PdlProvider(VendorProvider):
    def auth_headers(self, key: str) -> dict[str, str]:
        return {"X-Api-Key": key}

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        first, last, full = person_name(draft.get)
        return {
            "first_name": first,
            "last_name": last,
            "name": full,
            "company": draft.get("company_domain")
            or draft.get("company_clean")
            or draft.get("company"),
            "profile": draft.get("linkedin_url"),
        }

    per_request = BULK_LIMIT

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        return await in_chunks(drafts, BULK_LIMIT, lambda chunk: self._bulk(chunk, job_id))

    async def _bulk(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        requests = [
            {"params": {k: v for k, v in self.query(d).items() if v}, "metadata": {"n": i}}
            for i, d in enumerate(drafts)
        ]
        try:
            answer = await self.client.request(
                "POST", BULK_PATH, job_id, body={"requests": requests}
            )
            await self._check(answer)
            items = decode(self.name, _decode_bulk, answer.body)
            if len(items) != len(drafts):
                raise ProviderUnavailable(
                    f"{self.name}: bulk reply has {len(items)} items for {len(drafts)}"
                )
        except (ProviderUnavailable, ProviderRejected) as e:
            return [e for _ in drafts]
        replies: list[Reply] = [{} for _ in drafts]
        for position, item in enumerate(items):
            # The metadata echo ties an item to its request; the order does when it is absent.
            index = (item.metadata or {}).get("n", position)
            if isinstance(index, int) and 0 <= index < len(drafts):
                replies[index] = self._item_reply(item)
        return replies

    def _item_reply(self, item: PdlItem) -> Reply:
        if item.status == 200 and item.data is not None:
            return fields(email_of(item.data), "unknown", None, item.data.job_company_website)
        if item.status == 404:
            return {}
        message = item.error.message if item.error else ""
        detail = f"{self.name}: HTTP {item.status} {message or ''}".rstrip()
        if item.status == 429:
            return ProviderRateLimited(detail, status=item.status)
        if item.status >= 500:
            return ProviderUnavailable(detail, status=item.status)
        return ProviderRejected(detail)

    async def _check(self, answer: Answer) -> None:
        status = answer.status
        if status == 200:
            return
        if status == 401:
            raise self.client.park("bad_key", answer)
        if status == 402:
            raise self.client.park("out_of_credits", answer)
        if status == 429:
            raise await self.client.throttled(answer)
        if 400 <= status < 500:
            raise self.client.rejected(answer)
        raise self.client.unavailable(answer)
