"""No step does super-linear work on a lead: the worst inputs we know of, at the longest
length a lead field may have (shared/messages.py LEAD_FIELD_MAX_CHARS), stay within a
per-lead time budget.

A budget check, not a benchmark: each lead is timed with `time.perf_counter` and the best
of a few runs is kept (other processes share these cores). The budget is generous for
linear code (a lead takes well under a millisecond) and far below what the quadratic
company-name regex took (about 100 ms for a 500-character company of commas).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.enricher.draft import LeadDraft
from services.enricher.steps import run_final_steps, run_local_steps
from services.gateway.schemas import LeadIn
from services.gateway.validation import assign_ids, lead_errors
from services.scraper.sources.base import SourceResult, fit_scraped_lead
from shared.messages import LEAD_FIELD_MAX_CHARS, Lead

BUDGET_S = 0.01
RUNS = 3
TEXT_FIELDS = tuple(name for name in LEAD_FIELD_MAX_CHARS if name != "id")
# Pieces that regexes with nested or adjacent repetition backtrack on: separators the
# company and name steps strip, suffixes and honorifics they look for, URL and email
# punctuation, characters NFKD expands, whitespace str.split() and `\s` treat alike.
CHUNKS = (
    ",",
    " ",
    ", ",
    ".",
    "-",
    "'",
    "inc",
    " inc",
    ", Inc.",
    " s.a.s",
    " l.l.c",
    "dr ",
    " jr",
    "van ",
    "a",
    "a.",
    "a-",
    "1",
    "@",
    "@a.",
    "http://",
    "www.",
    "linkedin.com/in/",
    "?",
    "#",
    "/",
    "engineer",
    "head of ",
    "vice-president ",
    "\u00a0",
    "\u2003",
    "\t",
    "\ufdfa",  # NFKD: 18 characters
    "\u0301",
    "🚀",
    "ß",
    "K",  # Kelvin sign: matches `k` case-insensitively
)
pattern = st.lists(st.sampled_from(CHUNKS), min_size=1, max_size=6).map("".join)
# What the repeated piece sits between: a text of separators only is stripped to nothing,
# the same separators between two letters are what a backtracking regex chews on.
ENDS = ("", "a", "Acme")
ends = st.tuples(st.sampled_from(ENDS), st.sampled_from(ENDS))


def at_length(piece: str, length: int, around: tuple[str, str] = ("", "")) -> str:
    head, tail = around
    middle = length - len(head) - len(tail)
    return head + (piece * (middle // len(piece) + 1))[:middle] + tail


def full_lead(piece: str, around: tuple[str, str]) -> dict[str, str]:
    """Every text field filled to its limit with `piece` repeated."""
    fields = {name: at_length(piece, LEAD_FIELD_MAX_CHARS[name], around) for name in TEXT_FIELDS}
    return fields | {"id": "x"}


def best_time_s(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


# Steps skip work a lead does not need (names given, a domain given): each variant leaves
# out what makes another path run.
VARIANTS = ((), ("first_name", "last_name"), ("company_domain",), ("email",))


def enrich_locally(fields: dict[str, str], left_out: tuple[str, ...]) -> None:
    given = {name: value for name, value in fields.items() if name not in left_out}
    draft = run_local_steps(LeadDraft.of(Lead(**given)))
    # As if a provider found what the final steps use, at the same worst lengths.
    for name in ("first_name", "last_name", "company_domain"):
        draft.values.setdefault(name, fields[name])
    run_final_steps(draft).result()


def validate_at_gateway(fields: dict[str, str]) -> None:
    leads = [LeadIn(**fields)]
    list(lead_errors(leads))
    assign_ids(leads)


budgeted = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@budgeted
@given(piece=pattern, around=ends)
@example(piece=",", around=("a", "a"))
@example(piece=" ", around=("a", "a"))
@example(piece=", ", around=("a", "a"))
@example(piece=" inc", around=("a", ""))
@example(piece="a.", around=("", ""))
@example(piece="a-", around=("", "a"))
@example(piece="@a.", around=("a", ""))
@example(piece="\ufdfa", around=("", ""))
def test_every_step_stays_within_its_budget_per_lead(piece: str, around: tuple[str, str]) -> None:
    fields = full_lead(piece, around)
    for left_out in VARIANTS:
        elapsed = best_time_s(lambda: enrich_locally(fields, left_out))  # noqa: B023
        assert elapsed < BUDGET_S, f"{elapsed * 1000:.1f} ms for a lead of {piece!r}"


@budgeted
@given(piece=pattern, around=ends)
@example(piece=",", around=("a", "a"))
@example(piece="a.", around=("", ""))
@example(piece="@a.", around=("a", ""))
@example(piece="linkedin.com/in/", around=("http://", "a"))
def test_gateway_validation_stays_within_its_budget_per_lead(
    piece: str, around: tuple[str, str]
) -> None:
    fields = full_lead(piece, around)
    elapsed = best_time_s(lambda: validate_at_gateway(fields))
    assert elapsed < BUDGET_S, f"{elapsed * 1000:.1f} ms for a lead of {piece!r}"


@budgeted
@given(piece=pattern, factor=st.integers(min_value=1, max_value=40))
@example(piece=",", factor=40)
def test_scraped_leads_are_fitted_within_the_budget(piece: str, factor: int) -> None:
    """A source's field may be any length; fitting it is linear and the result bounded."""
    raw = {name: at_length(piece, LEAD_FIELD_MAX_CHARS[name] * factor) for name in TEXT_FIELDS}
    result = SourceResult(id=at_length(piece, 250 * factor), **raw)
    elapsed = best_time_s(lambda: fit_scraped_lead(result))
    lead, _ = fit_scraped_lead(result)
    assert elapsed < BUDGET_S
    for name, limit in LEAD_FIELD_MAX_CHARS.items():
        value = getattr(lead, name)
        assert value is None or len(value) <= limit, name
