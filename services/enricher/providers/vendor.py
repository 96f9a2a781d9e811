"""What every vendor adapter shares: one HTTP request with a timeout, under the provider's
concurrency limit, with the next key of its pool that has a turn (each key's windows and
cooldown); the vendor's "slow down" signal cools that key down, broadcast to every
enricher; a bad key or exhausted credits parks the provider.

Parking is per process for now: once parked, every later call fails at once with the same
`ProviderParked`, without a request. (Alerting, and sharing the park across enrichers, is
the credit ledger's work.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from services.enricher.config import ProviderSettings
from services.enricher.draft import LeadDraft
from services.enricher.metrics import ProviderMetrics
from services.enricher.providers.base import (
    ParkReason,
    ProviderParked,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    Slots,
    can_find_person,
    provider_pool,
)
from shared.limits import Limits
from shared.logging import get_logger
from shared.ratelimit import Cooldowns, Key, retry_after_s

T = TypeVar("T")
log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode


AuthHeaders = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    retry_after_s: float | None
    key: Key | None = None  # the pool's key that was used (its cooldown on a 429)

    def detail(self) -> str:
        return self.body[:200].decode(errors="replace")


class VendorClient:
    """HTTP to one vendor account; the adapter decides what each answer means."""

    def __init__(
        self,
        settings: ProviderSettings,
        session: aiohttp.ClientSession,
        control: Cooldowns,
        metrics: ProviderMetrics,
        auth_headers: AuthHeaders,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.name = settings.name
        self.base_url = settings.url
        self.parked: ProviderParked | None = None
        self._latency = metrics.seconds.labels(provider=settings.name)
        self.pool = provider_pool(settings, control, limits)
        self._auth = auth_headers
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._session = session
        self._slots = Slots(settings, limits)

    async def request(
        self,
        method: str,
        path: str,
        job_id: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Answer:
        """The vendor's answer, whatever its status; network trouble is `ProviderUnavailable`."""
        if self.parked is not None:
            raise self.parked
        data = None if body is None else _encode(body)
        async with self._slots.held():
            turn = await self.pool.turn(ProviderRateLimited)
            headers = {**self._auth(turn.key.secret), "X-Leadflow-Job": job_id}
            if data is not None:
                headers["Content-Type"] = "application/json"
            try:
                with self._latency.time():
                    return await turn.send(
                        self._send(method, path, params, data, headers, turn.key)
                    )
            except TimeoutError as e:
                raise ProviderUnavailable(
                    f"{self.name}: timed out after {self._timeout.total}s"
                ) from e
            except aiohttp.ClientError as e:
                raise ProviderUnavailable(f"{self.name}: {type(e).__name__}: {e}") from e

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
        key: Key,
    ) -> Answer:
        async with self._session.request(
            method,
            self.base_url + path,
            params=params,
            data=data,
            headers=headers,
            timeout=self._timeout,
        ) as response:
            return Answer(
                response.status,
                await response.read(),
                retry_after_s(response.headers.get("Retry-After")),
                key,
            )

    async def throttled(self, answer: Answer) -> ProviderRateLimited:
        """The vendor's rate-limit signal: the key cools down (its Retry-After, or the
        configured pause); the other keys go on."""
        key = answer.key or self.pool.keys[0]
        pause = await key.gate.cool_down(answer.retry_after_s)
        return ProviderRateLimited(
            f"{self.name}: rate limited (HTTP {answer.status}, {key.label})",
            retry_after_s=pause,
            status=429,
        )

    def park(self, reason: ParkReason, answer: Answer) -> ProviderParked:
        parked = ProviderParked(
            f"{self.name}: parked, {reason.replace('_', ' ')} (HTTP {answer.status} "
            f"{answer.detail()})".rstrip(),
            reason=reason,
        )
        if self.parked is None:
            log.error("provider.parked", provider=self.name, reason=reason, status=answer.status)
            self.parked = parked
        return parked

    def unavailable(self, answer: Answer) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"{self.name}: HTTP {answer.status} {answer.detail()}".rstrip(),
            retry_after_s=answer.retry_after_s,
            status=answer.status,
        )

    def rejected(self, answer: Answer) -> ProviderRejected:
        return ProviderRejected(f"{self.name}: HTTP {answer.status} {answer.detail()}".rstrip())


class VendorProvider:
    """What every vendor adapter shares: its name, and a client that sends the vendor's
    own authentication header (each adapter says which in `auth_headers`)."""

    def __init__(
        self,
        settings: ProviderSettings,
        session: aiohttp.ClientSession,
        control: Cooldowns,
        metrics: ProviderMetrics,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.client = VendorClient(
            settings, session, control, metrics, self.auth_headers, limits=limits
        )

    def auth_headers(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def can_help(self, draft: LeadDraft) -> bool:
        return can_find_person(draft)


def decode(provider: str, decoder: Callable[[bytes], T], body: bytes) -> T:
    try:
        return decoder(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProviderUnavailable(f"{provider}: malformed reply ({e})") from e


def person_name(
    draft_get: Callable[[str], str | None],
) -> tuple[str | None, str | None, str | None]:
    """(first, last, full): first and last when both are known, else the full name."""
    first, last = draft_get("first_name"), draft_get("last_name")
    if first and last:
        return first, last, None
    return None, None, draft_get("full_name")


def fields(
    email: str | None,
    status: str,
    raw_status: str | None,
    domain: str | None,
    score: int | None = None,
) -> dict[str, str]:
    """A found person as a waterfall reply (only what is there)."""
    found: dict[str, str] = {}
    if email:
        found["email"] = email
        found["email_status"] = status
        if raw_status:
            found["email_status_raw"] = raw_status
        if score is not None:
            found["email_score"] = str(score)
    if domain:
        found["company_domain"] = domain
    return found
