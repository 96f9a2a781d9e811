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
from shared.ratelimit import Gate

CUT_FIELDS = frozenset({"full_name", "first_name", "last_name", "title", "company", "location"})
# An account's turn further away than this is not waited for while holding the page task:
# the task goes back through the broker's delay tier (shared/ratelimit.py Gate).
MAX_INLINE_WAIT_S = 0.5


@dataclass(frozen=True)
class Page:
    leads: list[Lead]
    next_cursor: str | None


class SourceUnavailable(TransientError):
    """Timeout, 5xx, garbage: fetch the page again later."""


class SourceSaidLater(SourceUnavailable):
    """The source, or its account's turn-taking, said "later": nothing about the page, so
    it waits without spending an attempt."""

    later = True


class SourceRateLimited(SourceSaidLater):
    """429 or a soft block: the account must cool down (for `retry_after_s` if given)."""


class AccountCoolingDown(SourceSaidLater):
    """The account is in a cooldown (here or broadcast by another scraper): not called."""


class AccountOverRate(SourceSaidLater):
    """The account's next turn under its request rate is too far away to wait for here."""


class SourceRejected(PermanentError):
    """The source refused the query (4xx): the job cannot go on."""


class Source(Protocol):
    name: str
    accounts: tuple[str, ...]  # labels, e.g. acct0, acct1 (never the keys themselves)

    def gate(self, account: str) -> Gate:
        """The account's cooldown and request rate, which every fetch goes through."""

    async def fetch(
        self, account: str, query: dict[str, str], cursor: str | None, job_id: str
    ) -> Page:
        """One page of results for the query, from the cursor (None: the first page)."""


# One search result as the source sent it: a `Lead` of any length (`Lead` itself carries no
# limit), fitted to the limits by `fit_scraped_lead` before it travels on.
SourceResult = Lead


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
