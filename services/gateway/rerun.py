"""`POST /v1/jobs/{id}/rerun`: a finished job's leads enriched again, as a new enrich job.

Each lead (failed ones too) goes in as the job had it before any provider answered: its
result without the fields a provider supplied (`sources` says which). So every provider is
asked the very question it was asked before, and answers it from the provider cache, free,
filling what it found then; the waterfall goes on only for the fields still missing. What a
rerun pays for is the providers that could not answer then (unavailable, parked, out of
budget) or were added to the waterfall since. (Keeping the found fields instead would change
the questions, a new domain in a query is a new fingerprint, and pay the same providers
again.) The new job takes the body's `max_credits`, `priority` and
`destinations` (none given: results are kept for the API and the dashboard).
"""

from __future__ import annotations

from functools import partial

import msgspec
from aiohttp import web

from services.gateway.errors import JobNotFinished
from services.gateway.keys import SETTINGS, STORE, tenant_of
from services.gateway.newjobs import enrich_job
from services.gateway.routes import accept, require_job
from services.gateway.schemas import EnrichJobRequest, RerunRequest
from services.gateway.validation import decode_request
from shared import jobstate
from shared.dbapi import Connection
from shared.messages import Lead

_decode_result = msgspec.json.Decoder(dict[str, object]).decode
PROVIDER_SOURCE = "provider:"  # services/enricher/waterfall.py apply_answer


async def rerun_job(request: web.Request) -> web.Response:
    job = await require_job(request)
    if job.state not in jobstate.TERMINAL:
        raise JobNotFinished(job.job_id, job.state)
    raw = await request.read() or b"{}"
    body = decode_request(raw, RerunRequest)
    leads = await request.app[STORE].run(partial(job_leads, job_id=job.job_id))
    tenant = tenant_of(request)
    again = EnrichJobRequest(
        destinations=body.destinations,
        priority=body.priority or job.priority,
        max_credits=body.max_credits,
    )
    new = await enrich_job(again, leads, tenant, request.app[SETTINGS], request.app[STORE])
    # The raw body with the job id keys an Idempotency-Key replay to this rerun.
    return await accept(request, tenant, new, job.job_id.encode() + b"\n" + raw)


def job_leads(conn: Connection, job_id: str) -> list[Lead]:
    """Every lead of the job with an outcome, without what providers found, in finishing
    order."""
    rows = conn.execute("SELECT data FROM leads WHERE job_id = ? ORDER BY seq", (job_id,))
    return [before_providers(_decode_result(row[0])) for row in rows]


def before_providers(result: dict[str, object]) -> Lead:
    sources = result.get("sources")
    found = {
        name
        for name, source in (sources.items() if isinstance(sources, dict) else ())
        if isinstance(source, str) and source.startswith(PROVIDER_SOURCE)
    }
    fields = {
        name: value
        for name, value in result.items()
        if name in Lead.__struct_fields__ and name not in found
    }
    return msgspec.convert(fields, Lead)
