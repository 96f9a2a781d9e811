"""Request and response bodies of the public API, as msgspec types.

Unknown fields are refused on request bodies (a typo'd field must not be silently
ignored); string sizes are bounded so one request cannot carry megabytes in one field.
/openapi.json is generated from these types (services/gateway/openapi.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.jobs import DEFAULT_EMAIL_POLICY, Destination, EmailPolicy, JobStatus, Priority
from shared.messages import ResultLead, lead_limit

DAY_S = 86_400
# The most a job may spend, every provider together (its budget; absent: none).
MaxCredits = Annotated[int, msgspec.Meta(ge=0, le=10**12)]


class LeadIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Bounds: shared/messages.py LEAD_FIELD_MAX_CHARS, the table the scraper fits leads to.
    id: Annotated[str, lead_limit("id", min_length=1)] | None = None
    full_name: Annotated[str, lead_limit("full_name")] | None = None
    first_name: Annotated[str, lead_limit("first_name")] | None = None
    last_name: Annotated[str, lead_limit("last_name")] | None = None
    title: Annotated[str, lead_limit("title")] | None = None
    company: Annotated[str, lead_limit("company")] | None = None
    company_domain: Annotated[str, lead_limit("company_domain")] | None = None
    linkedin_url: Annotated[str, lead_limit("linkedin_url")] | None = None
    email: Annotated[str, lead_limit("email")] | None = None
    phone: Annotated[str, lead_limit("phone")] | None = None
    location: Annotated[str, lead_limit("location")] | None = None


class UploadJob(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `job` part of an upload (multipart): an enrich job without `leads` (the `leads`
    part holds them) and without `depends_on`."""

    destinations: Annotated[list[Destination], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    priority: Priority = "normal"
    # Absent: LEADFLOW_DEFAULT_TIMEOUT_S.
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=7 * DAY_S)] | None = None


class EnrichJobRequest(UploadJob, frozen=True, kw_only=True, forbid_unknown_fields=True):
    leads: list[LeadIn] | None = None
    depends_on: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    # Which found emails end the waterfall: `valid_only`, `allow_catch_all`, `any`.
    email_policy: EmailPolicy = DEFAULT_EMAIL_POLICY
    max_credits: MaxCredits | None = None
    # Answer the expected and the maximum credits instead of creating a job.
    dry_run: bool = False


QueryValue = Annotated[str, msgspec.Meta(max_length=200)]


class ScrapeJobRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    # Search terms the source understands (`keywords`, `geo`, `title`, `company`...).
    query: Annotated[
        dict[Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,40}$")], QueryValue],
        msgspec.Meta(min_length=1, max_length=20),
    ]
    max_pages: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    max_leads: Annotated[int, msgspec.Meta(ge=1)] = 250
    enrich: bool = False
    destinations: Annotated[list[Destination], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    priority: Priority = "normal"
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=7 * DAY_S)] | None = None
    email_policy: EmailPolicy = DEFAULT_EMAIL_POLICY  # with `enrich: true`
    max_credits: MaxCredits | None = None


class ResumeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/jobs/{id}/resume`: the paused job's new cap (absent: no cap)."""

    max_credits: MaxCredits | None = None


class RerunRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/jobs/{id}/rerun`: options of the new job (absent: the finished job's
    priority, no cap, no destinations but the dashboard)."""

    destinations: Annotated[list[Destination], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    priority: Priority | None = None
    max_credits: MaxCredits | None = None


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    state: str
    status_url: str


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/jobs`: the tenant's jobs, newest first; `next_cursor` asks for the next page."""

    jobs: list[JobStatus]
    next_cursor: str | None


class LeadPage(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/jobs/{id}/leads?format=json`: results in the order they finished.

    The route splices the stored result JSON into this shape instead of re-encoding each
    lead; the type states the shape for clients and /openapi.json.
    """

    leads: list[ResultLead]
    next_cursor: str | None
