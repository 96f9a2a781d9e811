"""The job record: states, destinations and the spec the gateway accepts and the router serves.

Destinations are validated by the gateway with these same types and stored with the job,
so the router delivers exactly what was accepted.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec

# The states the API shows; which are terminal and how a job moves between them is
# shared/jobstate.py's.
JobState = Literal[
    "queued", "waiting", "running", "paused", "completed", "failed", "cancelled", "timed_out"
]
PausedReason = Literal["budget", "tenant_budget"]
JobKind = Literal["enrich", "scrape"]
Priority = Literal["high", "normal", "low"]

# Which found emails end the waterfall (services/enricher/emailpolicy.py).
EmailPolicy = Literal["valid_only", "allow_catch_all", "any"]
DEFAULT_EMAIL_POLICY: EmailPolicy = "allow_catch_all"
EMAIL_POLICIES: tuple[str, ...] = get_args(EmailPolicy)

JOB_STATES: tuple[str, ...] = get_args(JobState)
PRIORITY_LEVELS: dict[str, int] = {"low": 1, "normal": 2, "high": 3}

FieldMap = dict[str, str]
CsvName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=120,
        description="A plain file name (no directories); `.csv` is added when absent.",
    ),
]
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=1000)]
# Accepted, never answered: the store keeps it sealed (shared/secretbox.py) and no
# response carries it.
WebhookSecret = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=512,
        description="Standard Webhooks signing secret (`whsec_<base64>`, or any string).",
        extra_json_schema={"writeOnly": True},
    ),
]


class WebhookDestination(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag="webhook",
    tag_field="type",
    forbid_unknown_fields=True,
):
    url: Annotated[str, msgspec.Meta(max_length=2048)]
    secret: WebhookSecret | None = None
    batch_size: BatchSize = 50
    fields: FieldMap | None = None


class CsvDestination(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag="csv",
    tag_field="type",
    forbid_unknown_fields=True,
):
    name: CsvName
    fields: FieldMap | None = None

    @property
    def file_name(self) -> str:
        return self.name if self.name.lower().endswith(".csv") else f"{self.name}.csv"


class DashboardDestination(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag="dashboard",
    tag_field="type",
    forbid_unknown_fields=True,
):
    fields: FieldMap | None = None


Destination = WebhookDestination | CsvDestination | DashboardDestination


class ScrapeSpec(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    query: dict[str, str]
    max_pages: int
    max_leads: int
    enrich: bool


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of a job request the router needs after the gateway accepted it."""

    destinations: list[Destination] = msgspec.field(default_factory=list)
    scrape: ScrapeSpec | None = None
    email_policy: EmailPolicy = DEFAULT_EMAIL_POLICY


class Progress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    total: int | None
    done: int
    enriched: int
    failed: int
    percent: float
    # Scrape jobs only: leads found and pages fetched so far.
    scraped: int | None = None
    pages: int | None = None
    # Provider credits spent so far, every provider together (the credit ledger's sum).
    credits: int | None = None


class DestinationStatus(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    delivered: int
    failed: int
    pending: int
    last_error: str | None
    name: str | None = None


class JobStatus(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/jobs/{id}` as API.md gives it."""

    job_id: str
    kind: JobKind
    state: JobState
    priority: Priority
    progress: Progress
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    destinations: list[DestinationStatus]
    depends_on: str | None
    timeout_s: int | None = None
    stalled: bool = False
    stall_reason: str | None = None
    cooling_down_until: str | None = None
    # The credit ledger's sums for this job, by provider; why a paused job is paused.
    credits_by_provider: dict[str, int] = msgspec.field(default_factory=dict)
    max_credits: int | None = None
    paused_reason: PausedReason | None = None


def percent(done: int, total: int | None) -> float:
    if not total:
        return 0.0
    return round(100.0 * done / total, 1)
