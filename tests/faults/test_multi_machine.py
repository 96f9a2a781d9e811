"""Two machines in all but name on one PostgreSQL store and one broker: each has its own data
dir and processes (machine A: sandbox, scraper, gateway, router, enricher; machine B:
gateway, router, enricher), and they share only the store, the broker and the exports
directory (shared storage, as `LEADFLOW_EXPORTS_DIR` asks of a real deployment). The
active router and an enricher are killed (-9) mid-job: every lead is still exactly once in
the API (asked of the other machine's gateway), the webhook and the CSV."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.broker_node import BrokerNode
from tests.faults.invariants import assert_invariants
from tests.helpers import Api, WebhookReceiver, wait_until
from tests.pg import pg_schema, scaleout_pg_url, unreachable

PG_URL = scaleout_pg_url()
pytestmark = pytest.mark.skipif((reason := unreachable(PG_URL)) is not None, reason=reason or "")
SLOW = {"LEADFLOW_SANDBOX_LATENCY_MS": "60", "LEADFLOW_ENRICH_PREFETCH": "2"}
CONSUMED = "leadflow_messages_consumed"  # the family of leadflow_messages_consumed_total


async def events_consumed(http: aiohttp.ClientSession, router: str) -> float:
    """Events this router has taken from the events queue (only the active one takes any)."""
    async with http.get(f"{router}/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == CONSUMED
        for sample in family.samples
        if sample.name.endswith("_total") and "router.events" in sample.labels["queue"]
    )


async def test_kill_the_active_router_and_an_enricher_of_two_machines_mid_job(
    fault_stack: Callable[..., Stack],
    broker_node: BrokerNode,
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
) -> None:
    with pg_schema(PG_URL) as store_url:
        machine_a = fault_stack({**SLOW, "LEADFLOW_STORE_URL": store_url})
        shared = {
            **SLOW,
            "LEADFLOW_STORE_URL": store_url,
            "LEADFLOW_EXPORTS_DIR": str(machine_a.data_dir / "exports"),
            "LEADFLOW_BROKER_PREFIX": machine_a.env["LEADFLOW_BROKER_PREFIX"],
        }
        machine_a.env["LEADFLOW_EXPORTS_DIR"] = shared["LEADFLOW_EXPORTS_DIR"]
        machine_b = fault_stack(
            {**shared, "LEADFLOW_SANDBOX_URL": f"http://127.0.0.1:{machine_a.ports['sandbox']}"}
        )
        try:
            await asyncio.to_thread(machine_a.start)
            await asyncio.to_thread(machine_b.start, "router", "enricher", "gateway")
            api_a, api_b = Api(machine_a.url("gateway"), http), Api(machine_b.url("gateway"), http)
            leads = make_leads(1000, seed=1201)
            job = await api_a.submit(
                {
                    "leads": leads,
                    "destinations": [
                        {"type": "webhook", "url": webhook.url, "batch_size": 50},
                        {"type": "csv", "name": "two-machines"},
                    ],
                }
            )

            async def progressed() -> bool:
                return bool((await api_b.job(job["job_id"]))["progress"]["done"] >= 200)

            await wait_until(progressed, timeout_s=90, what="the job a fifth done")
            machines = (machine_a, machine_b)
            counts = [await events_consumed(http, stack.url("router")) for stack in machines]
            active = counts.index(max(counts))
            assert counts[active] > 0, counts
            machines[active].services["router"].kill()
            machine_a.services["enricher"].kill()

            await assert_invariants(
                api_b,
                machine_a,  # its data dir holds the shared exports directory
                broker_node,
                job["job_id"],
                {lead["id"] for lead in leads},
                csv_name="two-machines",
                webhook=webhook,
                timeout_s=180,
            )
        finally:
            # Every process stops before its schema goes.
            for stack in (machine_b, machine_a):
                for service in stack.services.values():
                    await asyncio.to_thread(service.stop, 10)
