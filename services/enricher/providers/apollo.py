"""Apollo.io People Enrichment, through Bulk People Enrichment (`people/bulk_match`).

Followed: https://docs.apollo.io/reference/bulk-people-enrichment and
https://docs.apollo.io/docs/bulk-people-enrichment (`POST
https://api.apollo.io/api/v1/people/bulk_match`, up to 10 people in `details[]`, personal
emails and phones only on request, "consumes credits per enriched record when data is
returned"), https://docs.apollo.io/reference/people-enrichment (a 200 may say that nothing
was enriched), https://docs.apollo.io/docs/enrich-people-data (`X-Api-Key` header),
https://docs.apollo.io/reference/errors-1 (400 invalid request, 401 invalid credentials,
403 forbidden: plan or key without API access, 422 misconfigured parameters, 429 too many
requests, 500) and the email statuses at
https://knowledge.apollo.io/hc/en-us/articles/4423314404621-Email-Status-Overview.

- `details[i]`: `first_name` + `last_name` (or `name`), `domain`, `organization_name`,
  `linkedin_url`; query `reveal_personal_emails=false` (work emails only: they are what a
  lead needs, and personal ones cost extra).
- 200 `{"matches": [...]}`, `matches[i]` for `details[i]`, null when nobody matched.
  Read: `email`, `email_status`, `organization.primary_domain`.
- The docs name no "out of credits" code: 401 parks (bad key), 403 parks (the key or plan
  has no API access: asking again cannot help; out of credits when its message says
  "credit"), 402 would park as out of credits if sent;
  429 is a cooldown (Retry-After honoured when sent; the docs give none); 400/422 refuse
  the batch; 5xx ask later.

Status words (the API spells them in snake case): `verified` and `likely_to_engage` are
valid; `unverified`, `guessed`, `extrapolated`, `pending_manual_fulfillment`,
`update_required` are unknown; `bounced` and `unavailable` (no usable email) are invalid.
Apollo has no catch-all status of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from services.enricher.draft import LeadDraft
from services.enricher.providers.base import (
    EmailStatus,
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

BULK_PATH = "/api/v1/people/bulk_match"
BULK_LIMIT = 10
STATUSES: dict[str, EmailStatus] = {
    "verified": "valid",
    "likely_to_engage": "valid",
    "unverified": "unknown",
    "guessed": "unknown",
    "extrapolated": "unknown",
    "pending_manual_fulfillment": "unknown",
    "update_required": "unknown",
    "bounced": "invalid",
    "unavailable": "invalid",
}
# Apollo's stand-in for an email the plan has not unlocked: not an address.
LOCKED_EMAIL_PREFIX = "email_not_unlocked@"


class ApolloOrganization(msgspec.Struct):
    primary_domain: str | None = None


class ApolloPerson(msgspec.Struct):
    email: str | None = None
    email_status: str | None = None
    organization: ApolloOrganization | None = None


class BulkMatch(msgspec.Struct):
    matches: list[ApolloPerson | None]


_decode_bulk = msgspec.json.Decoder(BulkMatch).decode


def normalise(raw: str | None) -> EmailStatus:
    return STATUSES.get((raw or "").strip().lower().replace(" ", "_"), "unknown")


class ApolloProvider(VendorProvider):
    def auth_headers(self, key: str) -> dict[str, str]:
        return {"X-Api-Key": key, "Cache-Control": "no-cache"}

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        first, last, full = person_name(draft.get)
        return {
            "first_name": first,
            "last_name": last,
            "name": full,
            "domain": draft.get("company_domain"),
            "organization_name": draft.get("company_clean") or draft.get("company"),
            "linkedin_url": draft.get("linkedin_url"),
        }

    per_request = BULK_LIMIT

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        return await in_chunks(drafts, BULK_LIMIT, lambda chunk: self._bulk(chunk, job_id))

    async def _bulk(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        details = [{k: v for k, v in self.query(d).items() if v} for d in drafts]
        try:
            answer = await self.client.request(
                "POST",
                BULK_PATH,
                job_id,
                params={"reveal_personal_emails": "false", "reveal_phone_number": "false"},
                body={"details": details},
            )
            await self._check(answer)
            matches = decode(self.name, _decode_bulk, answer.body).matches
            if len(matches) != len(drafts):
                raise ProviderUnavailable(
                    f"{self.name}: bulk reply has {len(matches)} matches for {len(drafts)}"
                )
        except (ProviderUnavailable, ProviderRejected) as e:
            return [e for _ in drafts]
        return [self._reply(person) for person in matches]

    def _reply(self, person: ApolloPerson | None) -> Reply:
        if person is None:
            return {}
        email = person.email
        if email and email.startswith(LOCKED_EMAIL_PREFIX):
            email = None
        domain = person.organization.primary_domain if person.organization else None
        return fields(email, normalise(person.email_status), person.email_status, domain)

    async def _check(self, answer: Answer) -> None:
        status = answer.status
        if status == 200:
            return
        if status == 402 or (status == 403 and b"credit" in answer.body.lower()):
            raise self.client.park("out_of_credits", answer)
        if status in (401, 403):
            raise self.client.park("bad_key", answer)
        if status == 429:
            raise await self.client.throttled(answer)
        if 400 <= status < 500:
            raise self.client.rejected(answer)
        raise self.client.unavailable(answer)
