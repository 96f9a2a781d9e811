"""From a validated request to a `NewJob`: what to record and which tasks start it.

An enrich job that depends on a scrape job waits for it (its own leads kept aside, or the
scrape's leads taken when it completes); one whose dependency already completed starts at
once on its leads; a dependency that failed or was stopped is refused. Webhook secrets
leave the spec here, sealed (shared/secretbox.py), before anything is stored.
"""

from __future__ import annotations

from functools import partial
from typing import Protocol

import msgspec

from services.gateway.config import GatewaySettings
from services.gateway.errors import BadDependency
from services.gateway.schemas import EnrichJobRequest, ScrapeJobRequest, UploadJob
from services.gateway.submit import NewJob
from services.gateway.upload import Spool
from shared import jobstate
from shared.broker import Outgoing, Publish
from shared.dbapi import Connection
from shared.jobs import Destination, JobSpec, ScrapeSpec, WebhookDestination
from shared.messages import Lead, ScrapeTask
from shared.secretbox import SecretBox
from shared.store import Store, decode_spec, job_result_leads
from shared.tasks import enrich_tasks, task_size


async def enrich_job(
    request: EnrichJobRequest,
    leads: list[Lead],
    tenant: str,
    settings: GatewaySettings,
    store: Store,
) -> NewJob:
    waiting = False
    charged = len(leads)
    if request.depends_on is not None:
        state, max_leads = await store.run(
            partial(dependency_state, tenant=tenant, job_id=request.depends_on)
        )
        waiting = state != "completed"
        if not waiting and not leads:
            leads = await store.run(partial(job_result_leads, job_id=request.depends_on))
        # It will take the scrape's leads: charge the most it can find.
        charged = len(leads) or (max_leads if waiting else 0)
    priority = request.priority
    destinations, sealed = seal_secrets(request.destinations, settings.secret_box)
    return NewJob(
        kind="enrich",
        priority=priority,
        timeout_s=request.timeout_s or settings.default_timeout_s,
        spec=JobSpec(destinations=destinations, email_policy=request.email_policy),
        sealed_secrets=sealed,
        total=None if waiting and not leads else len(leads),
        charged=charged,
        tasks=lambda job_id: enrich_tasks(
            job_id, tenant, leads, settings.task_batch_size, priority, request.email_policy
        ),
        lanes=("enrich",),
        depends_on=request.depends_on,
        waiting=waiting,
        deferred=leads if waiting and leads else None,
        max_credits=request.max_credits,
    )


def upload_job(request: UploadJob, spool: Spool, tenant: str, settings: GatewaySettings) -> NewJob:
    """An enrich job of an upload's spooled leads: its tasks come from the spool, a window
    at a time (upload.py)."""
    destinations, sealed = seal_secrets(request.destinations, settings.secret_box)
    priority = request.priority
    return NewJob(
        kind="enrich",
        priority=priority,
        timeout_s=request.timeout_s or settings.default_timeout_s,
        spec=JobSpec(destinations=destinations),
        sealed_secrets=sealed,
        total=spool.leads,
        charged=spool.leads,
        tasks=lambda job_id: [],
        task_windows=lambda job_id: spool.windows(
            job_id, tenant, task_size(spool.leads, settings.task_batch_size), priority
        ),
        lanes=("enrich",),
    )


def dependency_state(conn: Connection, tenant: str, job_id: str) -> tuple[str, int]:
    """The state of the scrape job depended on, and the most leads it may find."""
    row = conn.execute(
        "SELECT kind, state, spec FROM jobs WHERE job_id = ? AND tenant = ?", (job_id, tenant)
    ).fetchone()
    if row is None:
        raise BadDependency(f"no job {job_id!r}", missing=True)
    if row["kind"] != "scrape":
        raise BadDependency("an enrich job can depend on a scrape job only")
    if row["state"] in jobstate.STOPPED:
        raise BadDependency(f"job {job_id} is {row['state']}: it will never complete")
    scrape = decode_spec(row["spec"]).scrape
    return str(row["state"]), scrape.max_leads if scrape is not None else 0


class JobDefaults(Protocol):
    """What building a scrape job needs of its submitter's settings (the gateway's, or the
    router's when its scheduler runs a saved search)."""

    @property
    def default_timeout_s(self) -> int: ...

    @property
    def secret_box(self) -> SecretBox: ...


def scrape_job(
    request: ScrapeJobRequest, tenant: str, settings: JobDefaults, *, only_new: bool = False
) -> NewJob:
    """`only_new` (a saved search's run): the router, not the scraper, starts enrichment, for
    the leads that earlier runs of the schedule did not deliver."""
    scrape = ScrapeSpec(
        source=request.source,
        query=dict(request.query),
        max_pages=request.max_pages,
        max_leads=request.max_leads,
        enrich=request.enrich,
    )

    def first_page(job_id: str) -> list[Outgoing]:
        task = ScrapeTask(
            job_id=job_id,
            tenant=tenant,
            source=scrape.source,
            query=scrape.query,
            max_pages=scrape.max_pages,
            max_leads=scrape.max_leads,
            enrich=scrape.enrich,
            only_new=only_new,
            email_policy=request.email_policy,
        )
        return [Publish(task, priority=request.priority)]

    destinations, sealed = seal_secrets(request.destinations, settings.secret_box)
    return NewJob(
        kind="scrape",
        priority=request.priority,
        timeout_s=request.timeout_s or settings.default_timeout_s,
        spec=JobSpec(destinations=destinations, scrape=scrape, email_policy=request.email_policy),
        sealed_secrets=sealed,
        total=None,
        charged=request.max_leads,
        tasks=first_page,
        lanes=("scrape", "enrich") if request.enrich else ("scrape",),
        max_credits=request.max_credits,
    )


def seal_secrets(
    destinations: list[Destination], box: SecretBox
) -> tuple[list[Destination], dict[int, str]]:
    """The destinations to store in the spec, without their secrets, and each webhook
    secret sealed by destination index (kept on the destination's row, where a rotation
    can replace it)."""
    stored: list[Destination] = []
    sealed: dict[int, str] = {}
    for idx, dest in enumerate(destinations):
        if isinstance(dest, WebhookDestination) and dest.secret is not None:
            sealed[idx] = box.seal(dest.secret)
            dest = msgspec.structs.replace(dest, secret=None)
        stored.append(dest)
    return stored, sealed
