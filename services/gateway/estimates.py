"""`"dry_run": true` on `POST /v1/jobs/enrich`: the job's expected and maximum credits,
answered at once (services/enricher/estimate.py walks the waterfall); no job is created and
no provider is called.

The provider cache read is the enrichers' file under the data dir (one machine, as in dev);
the observed rates are the tenant's record in the credit ledger (shared/credits.py).
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from services.enricher.cache import ProviderCache, cache_target
from services.enricher.estimate import EstimateAnswer, estimate
from services.gateway.keys import SETTINGS, STORE
from shared.credits import provider_records
from shared.messages import Lead


async def dry_run(request: web.Request, leads: list[Lead], tenant: str) -> EstimateAnswer:
    settings = request.app[SETTINGS]
    records = await request.app[STORE].run(partial(provider_records, tenant=tenant))
    cache = ProviderCache(cache_target(settings.common), settings.provider_cache_ttl_s)
    await cache.open()
    try:
        found = await estimate(leads, tenant, settings.providers, cache, records)
    finally:
        await cache.close()
    return EstimateAnswer(estimate=found)
