"""Local enrichment steps: pure functions over a `LeadDraft`, no network, no cost.

They run in order before the provider waterfall, so providers get clean names and a
known domain, and the waterfall only pays for what the steps could not work out.
"""

from __future__ import annotations

from services.enricher.draft import LeadDraft
from services.enricher.steps.company import clean_company
from services.enricher.steps.domain import derive_domain
from services.enricher.steps.emails import add_email_candidates
from services.enricher.steps.names import split_names
from services.enricher.steps.title import classify_title

LOCAL_STEPS = (split_names, clean_company, derive_domain, classify_title)


def run_local_steps(draft: LeadDraft) -> LeadDraft:
    for step in LOCAL_STEPS:
        step(draft)
    return draft


def run_final_steps(draft: LeadDraft) -> LeadDraft:
    """Steps that use what the providers found."""
    add_email_candidates(draft)
    if not draft.get("email"):
        draft.fill("email_status", "not_found", "waterfall")
    return draft
