"""Work out the company's domain from what the lead already has (domain, website or email)."""

from __future__ import annotations

import re
from functools import lru_cache

from services.enricher.draft import LeadDraft

SOURCE = "step:domain"
FREEMAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.ru",
        "yandex.ru",
        "qq.com",
        "163.com",
        "hey.com",
        "fastmail.com",
    }
)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def derive_domain(draft: LeadDraft) -> None:
    given = draft.get("company_domain")
    if given:
        normalised = normalise_domain(given)
        if normalised:
            draft.replace("company_domain", normalised, draft.sources.get("company_domain", SOURCE))
        return
    email = draft.get("email")
    if email and "@" in email:
        domain = email.rsplit("@", 1)[1].lower()
        if domain not in FREEMAIL:
            draft.fill("company_domain", normalise_domain(domain), SOURCE)


# Companies repeat across a job's leads and the providers' answers about them.
@lru_cache(maxsize=4096)
def normalise_domain(value: str) -> str | None:
    """'https://www.Acme.com/about' -> 'acme.com'; None when it is not a domain."""
    text = value.strip().lower()
    text = SCHEME.sub("", text)
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].split(":", 1)[0]
    text = text.removeprefix("www.").rstrip(".")
    return text if DOMAIN.match(text) else None
