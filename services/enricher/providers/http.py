"""HTTP adapter for person-match providers (name + company in, email + domain out).

Every call has a timeout, a per-provider concurrency limit and request rate. Status codes
map to the two failure kinds: 404 is "not found" (an answer), 429/5xx/timeouts/garbage are
`ProviderUnavailable` (retry later), other 4xx are `ProviderRejected` (do not retry).
A 429 puts the provider in a cooldown (Retry-After, or the configured one) broadcast to
every enricher: no call goes to it until the cooldown ends; leads that needed it are
retried after it.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import msgspec

from services.enricher.config import ProviderSettings
from services.enricher.draft import LeadDraft
from services.enricher.providers.base import ProviderRejected, ProviderUnavailable
from shared.control import ControlListener
from shared.ratelimit import TokenBucket

RETRYABLE_STATUS = frozenset({401, 403, 408, 409, 425, 429})
MAX_RATE_WAIT_S = 1.0


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


_encode = msgspec.json.Encoder().encode
_decode_match = msgspec.json.Decoder(PersonMatch).decode


class PersonMatchProvider:
    def __init__(
        self, settings: ProviderSettings, session: aiohttp.ClientSession, control: ControlListener
    ) -> None:
        self.name = settings.name
        self.target = f"provider:{settings.name}"
        self._control = control
        self._bucket = TokenBucket(settings.rate_per_s)
        self._cooldown_s = settings.cooldown_s
        self._url = f"{settings.url}/v1/person"
        self._headers = {
            "Authorization": f"Bearer {settings.key}",
            "Content-Type": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._session = session
        self._slots = asyncio.Semaphore(settings.concurrency)

    def can_help(self, draft: LeadDraft) -> bool:
        has_name = bool(
            draft.get("full_name") or (draft.get("first_name") and draft.get("last_name"))
        )
        has_company = bool(draft.get("company") or draft.get("company_domain"))
        return (has_name and has_company) or bool(draft.get("linkedin_url"))

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        return {
            "first_name": draft.get("first_name"),
            "last_name": draft.get("last_name"),
            "full_name": draft.get("full_name"),
            "company": draft.get("company_clean") or draft.get("company"),
            "company_domain": draft.get("company_domain"),
            "linkedin_url": draft.get("linkedin_url"),
        }

    async def lookup(self, draft: LeadDraft, job_id: str) -> dict[str, str]:
        query = PersonQuery(**self.query(draft))
        async with self._slots:
            await self._wait_turn()
            try:
                body = await self._post(_encode(query), job_id)
            except ProviderUnavailable as e:
                if e.status == 429:
                    pause = e.retry_after_s or self._cooldown_s
                    await self._control.start_cooldown(self.target, time.time() + pause)
                raise
        if body is None:
            return {}
        try:
            match = _decode_match(body)
        except msgspec.DecodeError as e:
            raise ProviderUnavailable(f"{self.name}: malformed reply ({e})") from e
        return {k: v for k, v in msgspec.structs.asdict(match).items() if isinstance(v, str) and v}

    async def _wait_turn(self) -> None:
        """Respect the cooldown and the request rate; a long wait is left to the broker."""
        left = self._control.cooldown_left(self.target)
        if left > 0:
            raise ProviderUnavailable(
                f"{self.name}: cooling down for {left:.1f}s", retry_after_s=left
            )
        while (wait := self._bucket.take()) > 0:
            if wait > MAX_RATE_WAIT_S:
                raise ProviderUnavailable(f"{self.name}: over its request rate", retry_after_s=wait)
            await asyncio.sleep(wait)

    async def _post(self, payload: bytes, job_id: str) -> bytes | None:
        headers = {**self._headers, "X-Leadflow-Job": job_id}
        try:
            async with self._session.post(
                self._url, data=payload, headers=headers, timeout=self._timeout
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError as e:
            raise ProviderUnavailable(f"{self.name}: timed out after {self._timeout.total}s") from e
        except aiohttp.ClientError as e:
            raise ProviderUnavailable(f"{self.name}: {type(e).__name__}: {e}") from e
        if status == 404:
            return None
        if 200 <= status < 300:
            return body
        detail = body[:200].decode(errors="replace")
        if status >= 500 or status in RETRYABLE_STATUS:
            raise ProviderUnavailable(
                f"{self.name}: HTTP {status} {detail}", retry_after_s=retry_after, status=status
            )
        raise ProviderRejected(f"{self.name}: HTTP {status} {detail}")


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
