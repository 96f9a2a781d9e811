"""What a provider adapter is, and the two ways a call can fail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.enricher.draft import LeadDraft
from shared.errors import TransientError


class ProviderUnavailable(TransientError):
    """Timeout, 5xx, 429, malformed reply: ask this provider again later."""

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status = status


class ProviderRejected(Exception):
    """The provider refused this lead (4xx): asking again would get the same answer."""


# Per lead: the fields found ({} when the provider knows nothing), its refusal, or why it
# could not answer now.
Reply = dict[str, str] | ProviderRejected | ProviderUnavailable


class Provider(Protocol):
    name: str

    def can_help(self, draft: LeadDraft) -> bool:
        """Whether this provider has enough to go on for this lead."""

    def query(self, draft: LeadDraft) -> dict[str, str | None]:
        """What would be sent for this lead (its fingerprint keys the answer cache)."""

    async def lookup_many(self, drafts: Sequence[LeadDraft], job_id: str) -> list[Reply]:
        """One reply per lead, in order."""
