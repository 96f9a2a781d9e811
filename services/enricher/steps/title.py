"""Classify a job title into seniority and department."""

from __future__ import annotations

import re
from functools import lru_cache

from services.enricher.draft import LeadDraft

SOURCE = "step:title"

# First match wins, so the most senior patterns come first.
SENIORITY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (level, re.compile(pattern, re.IGNORECASE))
    for level, pattern in (
        ("founder", r"\b(co-?)?founder\b"),
        ("c_level", r"\b(ceo|cto|cfo|coo|cmo|cio|ciso|cro|cpo|chief)\b"),
        ("owner", r"\b(owner|proprietor)\b"),
        ("partner", r"\bpartner\b"),
        ("vp", r"\b(vp|svp|evp|avp|vice[- ]president)\b"),
        ("head", r"\bhead of\b"),
        ("director", r"\bdirector\b"),
        ("manager", r"\b(manager|mgr|lead|supervisor)\b"),
        ("senior", r"\b(senior|sr\.?|principal|staff)\b"),
        ("intern", r"\b(intern|trainee|apprentice)\b"),
        ("entry", r"\b(junior|jr\.?|associate|assistant|graduate)\b"),
    )
)

DEPARTMENT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (department, re.compile(pattern, re.IGNORECASE))
    for department, pattern in (
        (
            "engineering",
            r"\b(engineer\w*|developer|cto|software|devops|sre|architect|technical|technology)\b",
        ),
        ("it", r"\b(it|cio|ciso|security|infrastructure|systems? admin\w*|network)\b"),
        ("data", r"\b(data|analytics|analyst|machine learning|ml|ai|scientist)\b"),
        ("product", r"\b(product|cpo|ux|ui|design\w*)\b"),
        ("sales", r"\b(sales|account executive|ae|sdr|bdr|business development|cro|revenue)\b"),
        ("marketing", r"\b(marketing|cmo|growth|brand|content|seo|demand gen\w*|communications)\b"),
        ("customer_success", r"\b(customer success|support|customer experience|cx)\b"),
        ("finance", r"\b(finance|financial|cfo|accounting|accountant|controller|treasury)\b"),
        ("hr", r"\b(hr|human resources|people|talent|recruit\w*)\b"),
        ("legal", r"\b(legal|counsel|attorney|lawyer|compliance)\b"),
        ("operations", r"\b(operations|ops|coo|supply chain|logistics|procurement)\b"),
        (
            "executive",
            r"\b(ceo|founder|co-?founder|president|owner|managing director|general manager)\b",
        ),
    )
)


def classify_title(draft: LeadDraft) -> None:
    title = draft.get("title")
    if not title:
        return
    seniority, department = classify(title)
    draft.fill("seniority", seniority, SOURCE)
    draft.fill("department", department, SOURCE)


# A job's titles repeat (a few hundred distinct ones in a list of thousands of leads): each
# is matched against the two dozen patterns once, not once per lead.
@lru_cache(maxsize=4096)
def classify(title: str) -> tuple[str, str | None]:
    """(seniority, department) of a title."""
    seniority = first_match(SENIORITY_RULES, title) or "individual_contributor"
    return seniority, first_match(DEPARTMENT_RULES, title)


def first_match(rules: tuple[tuple[str, re.Pattern[str]], ...], text: str) -> str | None:
    for label, pattern in rules:
        if pattern.search(text):
            return label
    return None
