"""Likely email addresses from name + domain, most common corporate patterns first.

Runs after the waterfall (a provider may have found the domain). When no provider knew
the person's email, the candidates are what the user can try or verify next.
"""

from __future__ import annotations

import re
import unicodedata

from services.enricher.draft import LeadDraft

PATTERNS = (
    "{first}.{last}",
    "{f}{last}",
    "{first}",
    "{first}{last}",
    "{first}_{last}",
    "{f}.{last}",
    "{last}",
)


def add_email_candidates(draft: LeadDraft) -> None:
    if not draft.get("email"):
        draft.email_candidates = email_candidates(draft)


def email_candidates(draft: LeadDraft) -> list[str]:
    first, last = slug(draft.get("first_name")), slug(draft.get("last_name"))
    domain = draft.get("company_domain")
    if not (first and last and domain):
        return []
    seen: dict[str, None] = {}
    for pattern in PATTERNS:
        seen[f"{pattern.format(first=first, last=last, f=first[0])}@{domain}"] = None
    return list(seen)


def slug(name: str | None) -> str:
    if not name:
        return ""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", plain.lower())
