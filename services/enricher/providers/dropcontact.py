"""Dropcontact's asynchronous batch API: submit the records, then poll by request id.

Followed: https://developer.dropcontact.com/en/quickstart/ (`POST
https://api.dropcontact.com/v1/enrich/all` with `{"data": [...], "siren", "language"}` and the
`X-Access-Token` header, answered `{"credits_left", "request_id", "error", "success"}`; then
`GET /v1/enrich/all/{request_id}`), https://developer.dropcontact.com/en/errors/ (a 200 is
not success: read `success`; "Request not ready yet, try again in 30 seconds" while the
batch runs, and the same for an unknown request id; messages in `reason` or `detail`),
https://developer.dropcontact.com/en/rate-limits/ (60 requests/s, 429 beyond; at most 250
records per request, 15 kB each; poll every 30 s), https://developer.dropcontact.com/en/credits/
(a credit only when a verified email is returned; "not enough credits for all the records
of the request" refuses the whole request with 403) and the email qualifications at
https://developer.dropcontact.com (`local@domain`: local `nominative | catch_all | generic |
random | invalid`, domain `pro | perso | invalid`; older pages say `non_confirm` for
catch-all).

- Records sent: `first_name` + `last_name` (or `full_name`), `company`, `website` (the
  domain when known), `linkedin`. The enriched records come back in the same order.
- 401 parks (bad token; the stored docs list it only among "errors by status code", so any
  401 is taken as a bad key), 403 parks (out of credits), 429 a cooldown, 400 refuses the
  batch, 5xx ask later. While not ready, it polls every `_POLL_S` (30 s per the docs) up to
  MAX_POLLS times, then gives the leads back to the broker to ask later.

A submitted batch's request id is stored (services/enricher/batches.py) before the first
poll: the same batch asked again (a redelivered task after a crash, or a retry after
MAX_POLLS) polls that id and is not submitted, nor paid for, twice.

Qualification to status: nominative is valid, catch_all (non_confirm) accept_all, generic
and random unknown (not the person's own mailbox), anything `invalid` is invalid. The best
email of a record is taken (valid, then accept_all, then unknown).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from services.enricher.batches import BatchStore, MemoryBatches, batch_fingerprint
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

SUBMIT_PATH = "/v1/enrich/all"
BATCH_LIMIT = 250
MAX_POLLS = 10
LOCAL_STATUSES: dict[str, EmailStatus] = {
    "nominative": "valid",
    "catch_all": "accept_all",
    "non_confirm": "accept_all",
    "generic": "unknown",
    "random": "unknown",
    "invalid": "invalid",
}
RANK: dict[EmailStatus, int] = {"valid": 0, "accept_all": 1, "unknown": 2}


class Submitted(msgspec.Struct):
    success: bool = False
    error: bool = False
    request_id: str | None = None
    reason: str | None = None


class DropcontactEmail(msgspec.Struct):
    email: str | None = None
    qualification: str | None = None


class EnrichedRecord(msgspec.Struct):
    email: list[DropcontactEmail] | None = None
    website: str | None = None


class Result(msgspec.Struct):
    success: bool = False
    error: bool = False
    reason: str | None = None
    data: list[EnrichedRecord] | None = None


_decode_submitted = msgspec.json.Decoder(Submitted).decode
_decode_result = msgspec.json.Decoder(Result).decode


def normalise(qualification: str | None) -> EmailStatus:
    local, _, domain = (qualification or "").partition("@")
    if domain == "invalid":
        return "invalid"
    return LOCAL_STATUSES.get(local, "unknown")


def best_email(record: EnrichedRecord) -> tuple[str | None, EmailStatus, str | None]:
    candidates = [
        (RANK[status], e.email, status, e.qualification)
        for e in record.email or []
        if e.email and (status := normalise(e.qualification)) in RANK
    ]
    if not candidates:
        return None, "unknown", None
    _, email, status, raw = min(candidates, key=lambda c: c[0])
    return email, status, raw


class DropcontactProvider(VendorProvider):
    def __init__(self, *args: Any, batches: BatchStore | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: BatchStore = batches if batches is not None else MemoryBatches()

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"X-Access-Token": key}

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        first, last, full = person_name(draft.get)
        return {
            "first_name": first,
            "last_name": last,
            "full_name": full,
            "company": draft.get("company_clean") or draft.get("company"),
            "website": draft.get("company_domain"),
            "linkedin": draft.get("linkedin_url"),
        }

    per_request = BATCH_LIMIT

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        return await in_chunks(drafts, BATCH_LIMIT, lambda chunk: self._batch(chunk, job_id))

    async def _batch(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        records = [{k: v for k, v in self.query(d).items() if v} for d in drafts]
        fingerprint = batch_fingerprint(job_id, records)
        try:
            request_id = await self.batches.submitted(self.name, fingerprint)
            if request_id is None:
                await self.batches.submitting(self.name, fingerprint, job_id)
                request_id = await self._submit(records, job_id)
                # Written down before the wait: a crash from here on polls, never resubmits.
                await self.batches.remember(self.name, fingerprint, request_id, job_id)
            enriched = await self._poll(request_id, job_id)
            if len(enriched) != len(drafts):
                raise ProviderUnavailable(
                    f"{self.name}: batch {request_id} has {len(enriched)} records for {len(drafts)}"
                )
        except (ProviderUnavailable, ProviderRejected) as e:
            return [e for _ in drafts]
        return [self._reply(record) for record in enriched]

    async def _submit(self, records: list[dict[str, Any]], job_id: str) -> str:
        body = {"data": records, "siren": False, "language": "en"}
        answer = await self.client.request("POST", SUBMIT_PATH, job_id, body=body)
        await self._check(answer)
        submitted = decode(self.name, _decode_submitted, answer.body)
        if not submitted.success or submitted.error or not submitted.request_id:
            raise ProviderRejected(f"{self.name}: batch refused: {submitted.reason or '?'}")
        return submitted.request_id

    async def _poll(self, request_id: str, job_id: str) -> list[EnrichedRecord]:
        for attempt in range(MAX_POLLS):
            if attempt:
                await asyncio.sleep(self.settings.poll_s)
            answer = await self.client.request("GET", f"{SUBMIT_PATH}/{request_id}", job_id)
            await self._check(answer)
            result = decode(self.name, _decode_result, answer.body)
            if result.success and result.data is not None:
                return result.data
            # Not ready (or unknown id, or trouble on their side): the docs say poll again.
        raise ProviderUnavailable(
            f"{self.name}: batch {request_id} not ready after {MAX_POLLS} polls",
            retry_after_s=self.settings.poll_s,
        )

    def _reply(self, record: EnrichedRecord) -> Reply:
        email, status, raw = best_email(record)
        return fields(email, status, raw, record.website)

    async def _check(self, answer: Answer) -> None:
        status = answer.status
        if status == 200:
            return
        if status == 401:
            raise self.client.park("bad_key", answer)
        if status == 403:  # "not enough credits for all the records of the request"
            raise self.client.park("out_of_credits", answer)
        if status == 429:
            raise await self.client.throttled(answer)
        if 400 <= status < 500:
            raise self.client.rejected(answer)
        raise self.client.unavailable(answer)
