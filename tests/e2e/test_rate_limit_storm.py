"""Rate limits slow a job; they never fail a lead (issue 13, item 8).

A sandbox answering 30 % of requests with 429 (Retry-After 1 s) and 10 % with 503 for the
whole job: a 429 or a provider's cooldown is "later", so it spends no attempt however long
the storm lasts; only the 503s count toward LEADFLOW_MAX_ATTEMPTS, and eight of them in a
row for one lead are out of reach. Every lead ends enriched.
"""

from __future__ import annotations

import aiohttp
import pytest

from devtools.samples import make_leads
from tests.helpers import StartStack, sandbox_stats

pytestmark = pytest.mark.e2e

LEADS = 400
STORM = {
    "LEADFLOW_SANDBOX_429_RATE": "0.3",
    "LEADFLOW_SANDBOX_ERROR_RATE": "0.1",
    "LEADFLOW_SANDBOX_RETRY_AFTER_S": "1",
    "LEADFLOW_MAX_ATTEMPTS": "8",
    # The backoff of attempts spent on 503s stays short, so the job's length is the storm's.
    "LEADFLOW_RETRY_BASE_S": "0.2",
    "LEADFLOW_RETRY_MAX_S": "2",
}


async def test_a_storm_of_429s_and_503s_fails_no_lead(
    start_stack: StartStack, http: aiohttp.ClientSession
) -> None:
    stack, api = await start_stack(STORM)
    leads = make_leads(LEADS, seed=1308)
    job = await api.submit({"leads": leads})

    final = await api.wait_job(job["job_id"], timeout_s=600)

    failed = await api.all_leads(job["job_id"], status="failed")
    assert [lead["error"] for lead in failed] == []
    assert final["state"] == "completed"
    assert final["progress"]["enriched"] == LEADS
    stats = await sandbox_stats(http, stack)
    # The storm did happen: many answers were 429s and 503s.
    assert stats["faults"]["429"] > 10, stats
    assert stats["faults"]["503"] > 5, stats
