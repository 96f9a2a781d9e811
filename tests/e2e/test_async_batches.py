"""Asynchronous providers survive crashes without paying twice: a Dropcontact batch's
request id is stored before the enricher waits for it, so a task redelivered after the
enricher is killed mid-wait polls that id instead of submitting the batch again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from devtools.stack import Stack
from tests.helpers import Api, wait_until

pytestmark = pytest.mark.e2e


async def sandbox_stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/_sandbox/stats") as response:
        stats: dict[str, Any] = await response.json()
    return stats


async def test_a_redelivered_batch_is_polled_not_submitted_again(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(
        {"LEADFLOW_PROVIDERS": "dropcontact", "LEADFLOW_PROVIDER_DROPCONTACT_POLL_S": "0.2"}
    )
    stack.start()
    sandbox = stack.url("sandbox")
    # Not ready for 25 polls: longer than the adapter's 10 polls of one attempt, so the
    # batch is also asked again after a retry, not only after the kill.
    async with http.put(
        f"{sandbox}/_sandbox/config", json={"dropcontact_polls_until_ready": 25}
    ) as response:
        assert response.status == 200
    api = Api(stack.url("gateway"), http)
    leads = [
        {"id": f"d{i}", "first_name": "Ada", "last_name": f"Lovelace{i}", "company": "Engines"}
        for i in range(5)
    ]
    job = await api.submit({"leads": leads})

    async def submitted_and_polled() -> bool:
        stats = await sandbox_stats(http, sandbox)
        polls = stats["vendor_requests"].get("dropcontact", 0) - 1
        return bool(stats["batches_submitted"].get("dropcontact", 0) == 1 and polls >= 3)

    await wait_until(submitted_and_polled, timeout_s=30, what="a batch submitted and polled")
    stack.services["enricher"].kill()  # mid-wait: the task was not acked
    stack.start("enricher")

    status = await api.wait_job(job["job_id"], timeout_s=90)
    stats = await sandbox_stats(http, sandbox)
    assert status["state"] == "completed"
    assert status["progress"]["done"] == len(leads)
    assert stats["batches_submitted"] == {"dropcontact": 1}
    assert stats["vendor_requests"]["dropcontact"] >= 1 + 25  # polled until ready
