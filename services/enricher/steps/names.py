"""Split a full name into first and last name, normalising case and dropping titles."""

from __future__ import annotations

import re
from functools import lru_cache

from services.enricher.draft import LeadDraft

SOURCE = "step:names"
HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame"})
SUFFIXES = frozenset(
    {"jr", "sr", "ii", "iii", "iv", "phd", "md", "mba", "cpa", "cfa", "esq", "pmp", "msc", "bsc"}
)
PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "del", "la", "le", "du", "bin"}
)
EMOJI_AND_NOISE = re.compile(r"[^\w\s'.,-]", re.UNICODE)


def split_names(draft: LeadDraft) -> None:
    first, last = draft.get("first_name"), draft.get("last_name")
    full = draft.get("full_name")
    if full and not (first and last):
        parsed_first, parsed_last = parse_full_name(full)
        draft.fill("first_name", parsed_first, SOURCE)
        draft.fill("last_name", parsed_last, SOURCE)
    for name in ("first_name", "last_name"):
        value = draft.get(name)
        if value:
            draft.replace(name, normalise_case(value), SOURCE)
    first, last = draft.get("first_name"), draft.get("last_name")
    if full:
        draft.replace("full_name", normalise_case(full.strip()), SOURCE)
    elif first and last:
        draft.fill("full_name", f"{first} {last}", SOURCE)


# Pure functions of a name, and names repeat across leads (first names most): each
# distinct one is worked out once.
@lru_cache(maxsize=4096)
def parse_full_name(full: str) -> tuple[str | None, str | None]:
    text = EMOJI_AND_NOISE.sub(" ", full)
    if text.count(",") == 1:
        before, after = (part.strip() for part in text.split(","))
        if after and is_affix(after.split()[0], SUFFIXES):
            text = before  # "Ada Lovelace, PhD"
        elif before and after:
            text = f"{after} {before}"  # "Lovelace, Ada"
    words = [w for w in text.replace(",", " ").split() if w]
    # Sliced once, not popped from the front one word at a time (quadratic on "dr dr dr...").
    start = 0
    while start < len(words) and is_affix(words[start], HONORIFICS):
        start += 1
    end = len(words)
    while end > start and is_affix(words[end - 1], SUFFIXES):
        end -= 1
    words = words[start:end]
    if not words:
        return None, None
    if len(words) == 1:
        return words[0], None
    # Particles belong to the last name: "Ludwig van Beethoven" -> "van Beethoven".
    split_at = len(words) - 1
    while split_at > 1 and words[split_at - 1].lower() in PARTICLES:
        split_at -= 1
    return words[0], " ".join(words[split_at:])


def is_affix(word: str, affixes: frozenset[str]) -> bool:
    return word.lower().strip(".") in affixes


@lru_cache(maxsize=4096)
def normalise_case(name: str) -> str:
    """Fix ALL CAPS or all lower case; leave mixed case (McDonald, DeVries) alone."""
    if not (name.isupper() or name.islower()):
        return name
    words = []
    for word in name.split():
        if word.lower() in PARTICLES:
            words.append(word.lower())
        else:
            words.append("-".join(_capitalise(part) for part in word.split("-")))
    return " ".join(words)


def _capitalise(part: str) -> str:
    lower = part.lower()
    if lower.startswith("o'") and len(lower) > 2:
        return "O'" + lower[2:].capitalize()
    if lower.startswith("mc") and len(lower) > 2:
        return "Mc" + lower[2:].capitalize()
    return lower.capitalize()
