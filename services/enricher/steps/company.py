"""Clean a company name: legal suffixes, stray punctuation and spacing go."""

from __future__ import annotations

import re

from services.enricher.draft import LeadDraft

SOURCE = "step:company"
LEGAL_SUFFIX = re.compile(
    r"[\s,]+(inc|incorporated|llc|l\.l\.c|ltd|limited|gmbh|ag|s\.?a\.?s?|plc|corp|corporation"
    r"|co|company|b\.?v|n\.?v|pty|oy|ab|as|srl|spa|kk)\.?$",
    re.IGNORECASE,
)


def clean_company(draft: LeadDraft) -> None:
    company = draft.get("company")
    if company:
        draft.fill("company_clean", clean_company_name(company), SOURCE)


def clean_company_name(name: str) -> str:
    text = " ".join(name.replace("\u00a0", " ").split()).strip(" ,.-")
    previous = None
    while previous != text:  # "Acme Holdings, Inc. Ltd" loses both suffixes
        previous = text
        stripped = LEGAL_SUFFIX.sub("", text).strip(" ,.-")
        text = stripped or text
    return text
