"""What a lead source adapter is: a search query and a cursor in, leads and the next cursor out.

A source is third-party text of any length. Each result is fitted to the lead limits
(shared/messages.py LEAD_FIELD_MAX_CHARS) before it becomes a lead, the way a user keeps
the most of it: free text (names, title, company, location) is cut at its limit; an
identifier a cut would make wrong (LinkedIn URL, email, domain, phone) is dropped; an
over-long lead id is replaced by a digest of it, so the same result keeps the same id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import msgspec

from shared.errors import PermanentError, TransientError
from shared.messages import LEAD_FIELD_MAX_CHARS, Lead

CUT_FIELDS = frozenset({"full_name", "first_name", "last_name", "title", "company", "location"})


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


class SourceResult(msgspec.Struct, kw_only=True):
    """One search result as the source sent it (the fields of `Lead`, any length)."""

    id: str
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    company_domain: str | None = None
    linkedin_url: str | None = None
    email: str | None = None
    phone: str | None = None
    location: str | None = None


def fit_scraped_lead(result: SourceResult) -> tuple[Lead, tuple[str, ...]]:
    """The lead within the limits, and the names of the fields that had to change."""
    fields = msgspec.structs.asdict(result)
    changed = []
    for name, value in fields.items():
        limit = LEAD_FIELD_MAX_CHARS[name]
        if value is None or len(value) <= limit:
            continue
        changed.append(name)
        if name == "id":
            fields[name] = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
        elif name in CUT_FIELDS:
            fields[name] = value[:limit]
        else:
            fields[name] = None
    return Lead(**fields), tuple(changed)
