"""What a provider adapter is, and the ways a call can fail.

Besides "ask again later" (`ProviderUnavailable`) and "this lead is refused"
(`ProviderRejected`), a vendor can refuse the account itself: a bad key or no credits left
(`ProviderParked`). That is no answer about the lead, so it is never cached, and the adapter
stops calling the vendor (asking again would fail the same way, or cost money the account
does not have).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal, Protocol, runtime_checkable

import msgspec

from services.enricher.config import ProviderSettings
from services.enricher.draft import LeadDraft
from shared.errors import StoreUnavailable, TransientError
from shared.limits import Limits, MemoryLimits
from shared.logging import get_logger
from shared.ratelimit import Cooldowns, KeyPool

log = get_logger(__name__)

# A provider's turn further away than this is not waited for while holding the task: the
# leads go back through the broker's delay tier (shared/ratelimit.py Gate).
MAX_RATE_WAIT_S = 1.0
# How often a request waiting for a free slot of a shared `_CONCURRENCY` looks again.
LEASE_POLL_S = 0.02


class ProviderUnavailable(TransientError):
    """Timeout, 5xx, 429, malformed reply: ask this provider again later. A 429 is the
    provider saying "later" (`later`): the lead waits without spending an attempt."""

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status = status
        if status == 429:
            self.later = True


class ProviderRateLimited(ProviderUnavailable):
    """The provider said "later" (429, or its own signal), a key is cooling down, or every
    key's window is used up: no fault of the request, so the lead waits without spending an
    attempt (`retry_after_s`: when a key may be called again)."""

    later = True


class ProviderRejected(Exception):
    """The provider refused this lead (4xx): asking again would get the same answer."""


ParkReason = Literal["bad_key", "out_of_credits"]


class ProviderParked(ProviderRejected):
    """The vendor refused the account (bad key, out of credits): no more calls to it."""

    def __init__(self, message: str, *, reason: ParkReason) -> None:
        super().__init__(message)
        self.reason: ParkReason = reason


# Every vendor's email status words are normalised to these (the raw word is kept beside).
EmailStatus = Literal["valid", "accept_all", "unknown", "invalid"]
EMAIL_STATUSES: tuple[EmailStatus, ...] = ("valid", "accept_all", "unknown", "invalid")


# Per lead: the fields found (`email`, `email_status` normalised, `email_status_raw` as the
# vendor said it, `company_domain`) ({} when the provider knows nothing), its refusal, or why it
# could not answer now.
Reply = dict[str, str] | ProviderRejected | ProviderUnavailable


class Provider(Protocol):
    name: str
    # The most leads one HTTP request of `lookup_many` carries (1 for a per-person API):
    # the waterfall asks at most this many at once, so that each request's answers are
    # written down as soon as they are in.
    per_request: int

    def can_help(self, draft: LeadDraft) -> bool:
        """Whether this provider has enough to go on for this lead."""

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        """What would be sent for this lead (its fingerprint keys the answer cache)."""

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        """One reply per lead, in order."""


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """A verifier's verdict on one email address."""

    email: str
    status: EmailStatus
    raw_status: str | None = None
    score: int | None = None


VerifyReply = Verification | ProviderRejected | ProviderUnavailable


@runtime_checkable
class Verifier(Protocol):
    name: str

    async def verify(self, email: str, job_id: str) -> VerifyReply:
        """The vendor's verdict on one email address."""


def provider_pool(
    settings: ProviderSettings, control: Cooldowns, limits: Limits | None = None
) -> KeyPool:
    """The keys every adapter of this provider calls with: each key's windows and cooldown
    (`provider:<name>:key<i>`), in `limits` (shared by all enrichers, or per process)."""
    return KeyPool(
        settings, f"provider:{settings.name}", control, max_wait_s=MAX_RATE_WAIT_S, limits=limits
    )


class Slots:
    """A provider's requests in flight: at most `_CONCURRENCY` in this process and, when the
    variable is set, in all enrichers together (a lease per request in `limits`, freed when
    the request ends, or after the provider's timeout if its holder died)."""

    def __init__(self, settings: ProviderSettings, limits: Limits | None = None) -> None:
        self.name = settings.name
        self.size = settings.concurrency
        self.target = f"provider:{settings.name}"
        self.hold_s = settings.timeout_s + 5.0
        self._local = asyncio.Semaphore(settings.concurrency)
        self._shared = limits if settings.shared_concurrency else None

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._local:
            shared = self._shared
            if shared is None or isinstance(shared, MemoryLimits):
                yield
                return
            lease = await self._lease(shared)
            try:
                yield
            finally:
                try:
                    await asyncio.shield(shared.release(self.target, lease))
                except StoreUnavailable as e:
                    # The answer is in hand; the lease frees itself after `hold_s`.
                    log.warning("provider.lease_not_released", provider=self.name, error=str(e))

    async def _lease(self, shared: Limits) -> str:
        deadline = time.monotonic() + MAX_RATE_WAIT_S
        while (lease := await shared.lease(self.target, self.size, self.hold_s)) is None:
            if time.monotonic() >= deadline:
                raise ProviderRateLimited(
                    f"{self.name}: all {self.size} requests in flight", retry_after_s=1.0
                )
            await asyncio.sleep(LEASE_POLL_S)
        return lease


def has_name_and_company(draft: LeadDraft) -> bool:
    """Enough to find a person by name: a full name (or first and last) and a company."""
    has_name = bool(draft.get("full_name") or (draft.get("first_name") and draft.get("last_name")))
    return has_name and bool(draft.get("company") or draft.get("company_domain"))


def can_find_person(draft: LeadDraft) -> bool:
    """What a person-match API needs: a name and a company, or a LinkedIn profile."""
    return has_name_and_company(draft) or bool(draft.get("linkedin_url"))


async def in_chunks(
    drafts: Sequence[LeadDraft],
    limit: int,
    ask: Callable[[Sequence[LeadDraft]], Awaitable[list[Reply]]],
) -> list[Reply]:
    """Ask for `drafts` in requests of at most `limit` people, concurrently; replies in order."""
    chunks = [drafts[i : i + limit] for i in range(0, len(drafts), limit)]
    replies = await asyncio.gather(*(ask(chunk) for chunk in chunks))
    return [reply for chunk in replies for reply in chunk]
