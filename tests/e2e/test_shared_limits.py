"""Shared limits: two enrichers against a provider that allows 20 requests a second per key.

Each key's allowance is kept in the store, so the two processes together stay under it:
the sandbox answers no 429, and while leads are waiting the pair uses at least 80 % of the
allowance (per process limits would send twice the allowance and meet 429 storms)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from devtools.stack import ServiceProcess, Stack
from tests.helpers import Api, free_port

pytestmark = pytest.mark.e2e

ALLOWANCE_PER_S = 20
# leadflow is told a request a second less than the vendor allows, as an operator would: at
# exactly the limit, arrival lag beyond the limiter's 30 ms margin (the sandbox's own event
# loop on a loaded 2-core CI machine) met one 429 in a clean CI rehearsal. The exact-limit
# case is measured by the `ratelimited` bench. Both processes together must still use 80 %
# of the vendor's allowance.
CONFIGURED_PER_S = ALLOWANCE_PER_S - 1
LEADS = 400


def second_enricher(stack: Stack) -> ServiceProcess:
    port = free_port()
    env = {**stack.env, "LEADFLOW_HTTP_PORT": str(port)}
    enricher = ServiceProcess("enricher", port, env, stack.data_dir / "log" / "enricher-2.log")
    stack.services["enricher-2"] = enricher  # stopped with the stack
    enricher.start()
    enricher.wait_ready()
    return enricher


async def provider_calls(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("leadflow_provider_call_seconds_count{")
    )


async def test_two_enrichers_share_a_key_allowance_without_429s(
    stack_factory: Callable[..., Stack], http: aiohttp.ClientSession
) -> None:
    stack = stack_factory(
        {
            "LEADFLOW_PROVIDERS": "alpha",
            "LEADFLOW_PROVIDER_ALPHA_BULK": "false",  # one request per lead: many requests
            "LEADFLOW_PROVIDER_ALPHA_LIMITS": f"{CONFIGURED_PER_S}/s",
            "LEADFLOW_SANDBOX_LATENCY_MS": "20",
            # A lead that meets every turn taken goes back to the broker for later; until
            # "later" spends no attempt nor grows the backoff (issue 13 item 8, another
            # branch), allow plenty, and keep the backoff in the shortest delay tier.
            "LEADFLOW_MAX_ATTEMPTS": "100",
            "LEADFLOW_RETRY_MAX_S": "1",
        }
    )
    stack.start()
    other = second_enricher(stack)
    sandbox = stack.url("sandbox")
    async with http.put(
        f"{sandbox}/_sandbox/config", json={"rate_limits": {"alpha": ALLOWANCE_PER_S}}
    ) as response:
        assert response.status == 200
    api = Api(stack.url("gateway"), http)
    leads = [
        {"id": f"s{i}", "full_name": f"Person{i} Example", "company": f"Company {i % 37}"}
        for i in range(LEADS)
    ]

    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while True:
            async with http.get(f"{sandbox}/_sandbox/stats") as response:
                stats: dict[str, Any] = await response.json()
            samples.append((time.monotonic(), stats["requests"].get("alpha", 0)))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    try:
        job = await api.submit({"leads": leads})
        status = await api.wait_job(job["job_id"], timeout_s=120)
    finally:
        sampler.cancel()
    async with http.get(f"{sandbox}/_sandbox/stats") as response:
        stats = await response.json()

    assert status["state"] == "completed"
    assert status["progress"]["done"] == LEADS
    assert status["progress"]["failed"] == 0
    assert stats["rate_limited"].get("alpha", 0) == 0
    total = stats["requests"]["alpha"]
    assert total >= LEADS
    # The rate between 10 % and 90 % of the requests: leads were waiting all along.
    start = next(s for s in samples if s[1] >= total * 0.1)
    end = next(s for s in samples if s[1] >= total * 0.9)
    rate = (end[1] - start[1]) / (end[0] - start[0])
    assert rate >= 0.8 * ALLOWANCE_PER_S, rate
    assert rate <= ALLOWANCE_PER_S * 1.05, rate
    # Both enrichers called the provider: the allowance was shared, not held by one.
    first = await provider_calls(http, stack.url("enricher"))
    second = await provider_calls(http, other.url)
    assert first > 0, (first, second)
    assert second > 0, (first, second)
