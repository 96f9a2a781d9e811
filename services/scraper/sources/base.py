"""What a lead source adapter is: a search query and a cursor in, leads and the next cursor out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.errors import PermanentError, TransientError
from shared.messages import Lead


@dataclass(frozen=True)
class Page:
    leads: list[Lead]
    next_cursor: str | None


class SourceUnavailable(TransientError):
    """Timeout, 5xx, garbage: fetch the page again later."""


class SourceRateLimited(SourceUnavailable):
    """429 or a soft block: the account must cool down (for `retry_after_s` if given)."""


class SourceRejected(PermanentError):
    """The source refused the query (4xx): the job cannot go on."""


class Source(Protocol):
    name: str
    accounts: tuple[str, ...]  # labels, e.g. acct0, acct1 (never the keys themselves)
    cooldown_s: float

    def reserve_turn(self, account: str, max_wait_s: float) -> float:
        """Seconds until the account's next turn, booked when at most `max_wait_s`."""

    async def fetch(
        self, account: str, query: dict[str, str], cursor: str | None, job_id: str
    ) -> Page:
        """One page of results for the query, from the cursor (None: the first page)."""
