"""What travels over the broker: one tagged union of frozen msgspec Structs.

The tag (`type` on the wire) doubles as the routing key. Schema evolution follows
msgspec's rules: new fields get defaults, types never change, and unknown fields are
ignored so an old consumer skips what a newer producer added.

A task or event carries several leads: the broker costs about as much per message as the
whole enrichment of a lead, so one message per lead per hop would cap throughput.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Literal

import msgspec

# `scraped`: a lead a scrape job found and was not asked to enrich.
LeadStatus = Literal["enriched", "failed", "scraped"]

# The longest value, in characters, of each text field of a lead: the one table of these
# limits. The gateway refuses a longer value (422 naming the field, services/gateway/
# schemas.py), the scraper fits a scraped lead to them (services/scraper/sources/base.py),
# and the enricher's steps are budgeted for leads at these lengths (tests/unit/
# test_step_budgets.py). `Lead` itself carries no limit: a message is never refused for it.
LEAD_FIELD_MAX_CHARS: MappingProxyType[str, int] = MappingProxyType(
    {
        "id": 200,
        "full_name": 500,
        "first_name": 500,
        "last_name": 500,
        "title": 500,
        "company": 500,
        "company_domain": 500,
        "linkedin_url": 2048,
        "email": 500,
        "phone": 64,
        "location": 500,
    }
)


def lead_limit(field: str, **constraints: Any) -> msgspec.Meta:
    """The `msgspec.Meta` bounding a lead field as LEAD_FIELD_MAX_CHARS says."""
    return msgspec.Meta(max_length=LEAD_FIELD_MAX_CHARS[field], **constraints)


class Lead(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A lead as accepted at the edge; `id` is the client's or one leadflow assigned."""

    id: str
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    company_domain: str | None = None
    linkedin_url: str | None = None
    email: str | None = None
    phone: str | None = None
    location: str | None = None


class ResultLead(msgspec.Struct, frozen=True, kw_only=True):
    """A finished lead, flat: the same shape in the API, webhook batches and CSV rows.

    Field order is the CSV column order (`id` first).
    """

    id: str
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    seniority: str | None = None
    department: str | None = None
    company: str | None = None
    company_clean: str | None = None
    company_domain: str | None = None
    email: str | None = None
    email_status: str | None = None
    email_candidates: list[str] = msgspec.field(default_factory=list)
    phone: str | None = None
    linkedin_url: str | None = None
    location: str | None = None
    status: LeadStatus = "enriched"
    error: str | None = None
    sources: dict[str, str] = msgspec.field(default_factory=dict)


RESULT_FIELDS: tuple[str, ...] = ResultLead.__struct_fields__


class ProviderAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What one provider said about one lead; carried across retries so it is paid once."""

    provider: str
    found: dict[str, str] = msgspec.field(default_factory=dict)
    rejected: str | None = None  # the provider refused the lead (why)


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    job_id: str
    tenant: str


class EnrichTask(Message, frozen=True, tag="task.enrich"):
    leads: list[Lead]
    # The attempt a task is on travels in a header (shared/broker.py ATTEMPT_HEADER); an
    # older producer's `attempt` field is an unknown field now, which decoding skips.
    # Provider answers already obtained for a lead (by lead id) on an earlier attempt.
    answers: dict[str, list[ProviderAnswer]] = msgspec.field(default_factory=dict)
    # The job's `email_policy` (shared/jobs.py EmailPolicy); older tasks have the default.
    email_policy: str = "allow_catch_all"


class ScrapeTask(Message, frozen=True, tag="task.scrape"):
    """One page of a scrape job; the cursor travels in the message, so a crash resumes
    at the first unfinished page."""

    source: str
    query: dict[str, str]
    max_pages: int
    max_leads: int
    enrich: bool = False
    page: int = 1
    cursor: str | None = None
    scraped: int = 0  # leads taken from the pages before this one
    account: str = ""  # chosen on the first page, kept for the whole job
    # A saved search's run delivering only new leads: the router filters the page's leads
    # (and starts their enrichment) rather than the scraper.
    only_new: bool = False
    email_policy: str = "allow_catch_all"  # for the enrich tasks of `enrich: true`


class LeadOutcomes(Message, frozen=True):
    leads: list[ResultLead]
    # Paid provider calls made to produce these outcomes (cache hits excluded), counted
    # once per event id for usage metering.
    provider_calls: dict[str, int] = msgspec.field(default_factory=dict)
    event_id: str = ""


class LeadsEnriched(LeadOutcomes, frozen=True, tag="lead.enriched"):
    pass


class LeadsFailed(LeadOutcomes, frozen=True, tag="lead.failed"):
    pass


class LeadsScraped(Message, frozen=True, tag="job.scraped"):
    """A page of a scrape job is in; `final` says it was the last one (`total` leads)."""

    page: int
    leads: list[Lead]
    enrich: bool
    final: bool = False
    total: int | None = None
    only_new: bool = False  # as the ScrapeTask's: the router filters and enriches


class JobCoolingDown(Message, frozen=True, tag="job.cooling_down"):
    """The job's next page waits for its source account's cooldown to end."""

    until: float


class UsageRecorded(Message, frozen=True, tag="job.usage"):
    """Paid provider calls made by a task that produced no outcome event."""

    provider_calls: dict[str, int]
    event_id: str


class JobFailed(Message, frozen=True, tag="job.failed"):
    """Work the job cannot do without (a scrape page) failed for good."""

    reason: str


class JobStopped(Message, frozen=True, tag="control.job_stopped"):
    """Broadcast: drop the job's remaining work and abandon what is in flight."""

    state: str
    reason: str


class JobDeleted(Message, frozen=True, tag="control.job_deleted"):
    """Broadcast: the job was deleted (by the user or retention); every enricher removes the
    provider answers its leads used from its cache."""


class LaneOpened(Message, frozen=True, tag="control.lane_opened"):
    """Broadcast: a tenant's lane for a kind of work exists; workers should consume it."""

    kind: str


class CooldownStarted(Message, frozen=True, tag="control.cooldown"):
    """Broadcast: `target` (`source:<name>:<account>` or `provider:<name>`) answered 429 or
    blocked us; no request goes to it before `until` (epoch seconds)."""

    target: str
    until: float


class ControlMarker(Message, frozen=True, tag="control.marker"):
    """Published by a worker to itself: once it reads its own marker, it has read all the
    control history that came before."""

    marker: str


AnyMessage = (
    EnrichTask
    | ScrapeTask
    | LeadsEnriched
    | LeadsFailed
    | LeadsScraped
    | JobCoolingDown
    | UsageRecorded
    | JobFailed
    | JobStopped
    | JobDeleted
    | LaneOpened
    | CooldownStarted
    | ControlMarker
)


def tag_of(message: Message) -> str:
    tag = type(message).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def routing_key(message: Message) -> str:
    """The tag, and for tasks the tenant too: each tenant's tasks go to its own lane."""
    tag = tag_of(message)
    return f"{tag}.{message.tenant}" if tag.startswith("task.") else tag


class Codec:
    """Encoder and decoder built once per process (msgspec's fast path)."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(AnyMessage)

    def encode(self, message: Message) -> bytes:
        return self._encoder.encode(message)

    def decode(self, body: bytes) -> AnyMessage:
        message: AnyMessage = self._decoder.decode(body)
        return message
