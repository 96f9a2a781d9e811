"""Clean a company name: legal suffixes, stray punctuation and spacing go.

Linear in the length of the name, whatever it holds. A regex searching for
"separators, then a suffix, at the end" restarts at every separator of a long run and
backtracks over the rest of it: quadratic, seconds of a blocked event loop for a page of
leads whose company is a few hundred commas. Here the name is read from its end instead:
only the last word is matched (it is at most as long as the longest suffix), and each
character is stepped over at most once as suffixes and separators are cut off.
"""

from __future__ import annotations

import re
from functools import lru_cache

from services.enricher.draft import LeadDraft

SOURCE = "step:company"
# Matched against the last word alone (`fullmatch`), never searched for.
LEGAL_SUFFIX = re.compile(
    r"(inc|incorporated|llc|l\.l\.c|ltd|limited|gmbh|ag|s\.?a\.?s?|plc|corp|corporation"
    r"|co|company|b\.?v|n\.?v|pty|oy|ab|as|srl|spa|kk)\.?",
    re.IGNORECASE,
)
LONGEST_SUFFIX = len("incorporated.")
SEPARATORS = " ,"  # after the whitespace is normalised to single spaces
TRIMMED = " ,.-"


def clean_company(draft: LeadDraft) -> None:
    company = draft.get("company")
    if company:
        draft.fill("company_clean", clean_company_name(company), SOURCE)


@lru_cache(maxsize=4096)  # a job's leads share their companies
def clean_company_name(name: str) -> str:
    """ "Acme Holdings, Inc. Ltd" -> "Acme Holdings": every trailing suffix goes."""
    text = " ".join(name.replace("\u00a0", " ").split()).strip(TRIMMED)
    end = len(text)
    while cut := suffix_cut(text, end):
        end = cut
    return text[:end]


def suffix_cut(text: str, end: int) -> int:
    """Where `text[:end]` ends without its last word, when that word is a legal suffix
    after a separator, and the separators and punctuation before it; 0 when it is not
    (or when nothing would be left: a name is never cleaned away)."""
    window = max(0, end - LONGEST_SUFFIX - 1)
    separator = max(text.rfind(sep, window, end) for sep in SEPARATORS)
    if separator < 0 or not LEGAL_SUFFIX.fullmatch(text, separator + 1, end):
        return 0
    cut = separator
    while cut > 0 and text[cut - 1] in TRIMMED:
        cut -= 1
    return cut
