"""HTTP adapter for person-match providers (name + company in, email + domain out).

Every call has a timeout, a per-provider concurrency limit, and goes with the next key of
the provider's pool that has a turn under its windows. Status codes map to the two failure
kinds: 404 is "not found" (an answer), 429/5xx/timeouts/garbage are `ProviderUnavailable`
(retry later; a 429 is `ProviderRateLimited`), other 4xx are `ProviderRejected` (do not
retry). A 429 puts the key that got it in a cooldown (Retry-After, or the configured one)
broadcast to every enricher: no call goes with that key until the cooldown ends; the other
keys go on, and leads wait only when every key is cooling down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

import aiohttp
import msgspec

from services.enricher.config import ProviderSettings
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import (
    EmailStatus,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    Reply,
    Slots,
    can_find_person,
    in_chunks,
    provider_pool,
)
from shared.limits import Limits
from shared.ratelimit import Cooldowns, Key, retry_after_s

RETRYABLE_STATUS = frozenset({401, 403, 408, 409, 425, 429})
BULK_LIMIT = 100  # people per bulk request, as the providers' bulk APIs allow


class PersonQuery(msgspec.Struct, kw_only=True, omit_defaults=True):
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    company: str | None = None
    company_domain: str | None = None
    linkedin_url: str | None = None


class PersonMatch(msgspec.Struct, kw_only=True):
    email: str | None = None
    email_status: str | None = None
    company_domain: str | None = None


class BulkItem(PersonMatch, kw_only=True):
    """A bulk result: what was found, or this person's own error."""

    error: str | None = None
    status: int | None = None


class BulkReply(msgspec.Struct, kw_only=True):
    results: list[BulkItem | None]


_encode = msgspec.json.Encoder().encode
_decode_match = msgspec.json.Decoder(PersonMatch).decode
_decode_bulk = msgspec.json.Decoder(BulkReply).decode
T = TypeVar("T")


def found_in(provider: str, decode: Callable[[bytes], T], body: bytes) -> T:
    try:
        return decode(body)
    except msgspec.DecodeError as e:
        raise ProviderUnavailable(f"{provider}: malformed reply ({e})") from e


# leadflow's own protocol says `valid` or `risky` (deliverable but not confirmed: what
# verifiers call catch-all); any other word is taken as the vendors' own four, else unknown.
STATUSES: dict[str, EmailStatus] = {
    "valid": "valid",
    "risky": "accept_all",
    "accept_all": "accept_all",
    "catch_all": "accept_all",
    "unknown": "unknown",
    "invalid": "invalid",
}


def fields_of(match: PersonMatch) -> dict[str, str]:
    found = {
        k: v for k in ("email", "company_domain") if isinstance(v := getattr(match, k), str) and v
    }
    if match.email:
        found["email_status"] = STATUSES.get((match.email_status or "").lower(), "unknown")
        if match.email_status:
            found["email_status_raw"] = match.email_status
    return found


class PersonMatchProvider:
    def __init__(
        self,
        settings: ProviderSettings,
        session: aiohttp.ClientSession,
        control: Cooldowns,
        metrics: ProviderMetrics,
        *,
        limits: Limits | None = None,
    ) -> None:
        self._latency = metrics.seconds.labels(provider=settings.name)
        self.name = settings.name
        self.pool = provider_pool(settings, control, limits)
        self._url = f"{settings.url}/v1/person"
        self._bulk_url = f"{settings.url}/v1/person/bulk"
        self._bulk = settings.bulk
        self.per_request = BULK_LIMIT if settings.bulk else 1
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._session = session
        self._slots = Slots(settings, limits)

    def can_help(self, draft: LeadDraft) -> bool:
        return can_find_person(draft)

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        return {
            "first_name": draft.get("first_name"),
            "last_name": draft.get("last_name"),
            "full_name": draft.get("full_name"),
            "company": draft.get("company_clean") or draft.get("company"),
            "company_domain": draft.get("company_domain"),
            "linkedin_url": draft.get("linkedin_url"),
        }

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        if not self._bulk:
            return list(await asyncio.gather(*(self._lookup_one(d, job_id) for d in drafts)))
        return await in_chunks(drafts, BULK_LIMIT, lambda chunk: self._lookup_bulk(chunk, job_id))

    async def _lookup_one(self, draft: LeadDraft, job_id: str) -> Reply:
        try:
            body = await self._call(self._url, _encode(PersonQuery(**self.query(draft))), job_id)
            return {} if body is None else fields_of(found_in(self.name, _decode_match, body))
        except (ProviderUnavailable, ProviderRejected) as e:
            return e

    async def _lookup_bulk(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        """One request for up to BULK_LIMIT people; a failure is every one's reply."""
        payload = _encode({"people": [PersonQuery(**self.query(d)) for d in drafts]})
        try:
            body = await self._call(self._bulk_url, payload, job_id)
            if body is None:
                return [{} for _ in drafts]
            reply = found_in(self.name, _decode_bulk, body)
            if len(reply.results) != len(drafts):
                raise ProviderUnavailable(
                    f"{self.name}: bulk reply has {len(reply.results)} results for {len(drafts)}"
                )
        except (ProviderUnavailable, ProviderRejected) as e:
            return [e for _ in drafts]
        return [self._item_reply(item) for item in reply.results]

    def _item_reply(self, item: BulkItem | None) -> Reply:
        if item is None:
            return {}
        if item.status is None or 200 <= item.status < 300:
            return fields_of(item)
        detail = f"{self.name}: HTTP {item.status} {item.error or ''}".rstrip()
        if item.status == 429:
            return ProviderRateLimited(detail, status=item.status)
        if item.status >= 500 or item.status in RETRYABLE_STATUS:
            return ProviderUnavailable(detail, status=item.status)
        return ProviderRejected(detail)

    async def _call(self, url: str, payload: bytes, job_id: str) -> bytes | None:
        async with self._slots.held():
            turn = await self.pool.turn(ProviderRateLimited)
            key = turn.key
            try:
                with self._latency.time():
                    return await turn.send(self._post(url, payload, job_id, key))
            except ProviderRateLimited as e:
                pause = await key.gate.cool_down(e.retry_after_s)
                raise ProviderRateLimited(
                    f"{e} ({key.label})", retry_after_s=pause, status=429
                ) from e

    async def _post(self, url: str, payload: bytes, job_id: str, key: Key) -> bytes | None:
        headers = {
            "Authorization": f"Bearer {key.secret}",
            "Content-Type": "application/json",
            "X-Leadflow-Job": job_id,
        }
        try:
            async with self._session.post(
                url, data=payload, headers=headers, timeout=self._timeout
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = retry_after_s(response.headers.get("Retry-After"))
        except TimeoutError as e:
            raise ProviderUnavailable(f"{self.name}: timed out after {self._timeout.total}s") from e
        except aiohttp.ClientError as e:
            raise ProviderUnavailable(f"{self.name}: {type(e).__name__}: {e}") from e
        if status == 404:
            return None
        if 200 <= status < 300:
            return body
        detail = body[:200].decode(errors="replace")
        if status == 429:
            raise ProviderRateLimited(
                f"{self.name}: HTTP {status} {detail}", retry_after_s=retry_after, status=status
            )
        if status >= 500 or status in RETRYABLE_STATUS:
            raise ProviderUnavailable(
                f"{self.name}: HTTP {status} {detail}", retry_after_s=retry_after, status=status
            )
        raise ProviderRejected(f"{self.name}: HTTP {status} {detail}")
