"""A three-node RabbitMQ cluster loses a node, twice, mid-job: every service moves to a
live node within 30 s, and the job completes with every lead exactly once in the CSV and
the webhook, nothing left in any queue.

The services are given all three nodes (`LEADFLOW_AMQP_URL` as a list) and start on the
first; node 1 is stopped (its whole VM) mid-job, started again, then node 2 is stopped.
Every queue that holds work is a quorum queue (or the control stream), so the messages on
a stopped node are on the two others too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from devtools.samples import make_leads
from devtools.stack import Stack
from tests.broker_node import BrokerCluster, BrokerNode, cluster_of_its_own
from tests.faults.invariants import assert_invariants
from tests.faults.test_crashes import progressed_to, submit_body
from tests.helpers import Api, WebhookReceiver, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
LEADS = 3000
READY_AGAIN_WITHIN_S = 30
# Slow enough that the job is still running when the second node stops.
PACED = {
    "LEADFLOW_SANDBOX_LATENCY_MS": "150",
    "LEADFLOW_ENRICH_PREFETCH": "2",
    "LEADFLOW_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "LEADFLOW_WEBHOOK_BACKOFF_MAX_S": "1",
}
BROKER_SERVICES = ("gateway", "enricher", "scraper", "router")


@pytest.fixture(scope="module")
def cluster() -> Iterator[BrokerCluster]:
    with cluster_of_its_own("leadflow-cluster-", "the cluster test needs rabbitmq-server") as c:
        yield c


async def node_of(http: aiohttp.ClientSession, url: str) -> str | None:
    """The node a ready service is on, None while it is not ready."""
    try:
        async with http.get(f"{url}/readyz") as response:
            body = await response.json()
            return body.get("node") if response.status == 200 else None
    except (aiohttp.ClientError, ValueError):
        return None


async def stop_node_and_wait_ready(
    cluster: BrokerCluster, node: BrokerNode, stack: Stack, http: aiohttp.ClientSession
) -> float:
    """Stop `node`; return how long until every service was ready on another node."""
    stopped_at = time.monotonic()
    stopping = asyncio.create_task(asyncio.to_thread(cluster.shutdown, node))

    async def all_elsewhere() -> dict[str, str] | None:
        nodes = {name: await node_of(http, stack.url(name)) for name in BROKER_SERVICES}
        ok = all(n is not None and n != node.address for n in nodes.values())
        return {k: v for k, v in nodes.items() if v is not None} if ok else None

    await wait_until(
        all_elsewhere,
        timeout_s=READY_AGAIN_WITHIN_S + 30,
        interval_s=0.5,
        what=f"every service ready on a node other than {node.address}",
    )
    elapsed = time.monotonic() - stopped_at
    await stopping
    return elapsed


async def test_a_node_stops_twice_mid_job_and_nothing_is_lost_or_doubled(
    cluster: BrokerCluster,
    stack_factory: Callable[..., Stack],
    http: aiohttp.ClientSession,
    webhook: WebhookReceiver,
) -> None:
    node1, node2, _ = cluster.nodes
    stack = stack_factory({"LEADFLOW_AMQP_URL": cluster.amqp_url, **PACED})
    await asyncio.to_thread(stack.start)
    for name in BROKER_SERVICES:
        assert await node_of(http, stack.url(name)) == node1.address, "the first node answers"
    api = Api(stack.url("gateway"), http)
    leads = make_leads(LEADS, seed=1401)
    job = await api.submit(submit_body(leads, webhook, "cluster"))
    job_id = job["job_id"]

    await wait_until(lambda: progressed_to(api, job_id, 300), timeout_s=120, what="progress")
    first = await stop_node_and_wait_ready(cluster, node1, stack, http)
    assert first <= READY_AGAIN_WITHIN_S, f"ready again {first:.1f}s after node 1 stopped"

    await asyncio.to_thread(cluster.restart, node1)
    at_restart = (await api.job(job_id))["progress"]["done"]
    await wait_until(
        lambda: progressed_to(api, job_id, min(at_restart + 200, LEADS - 500)),
        timeout_s=120,
        what="progress after node 1 came back",
    )
    assert (await api.job(job_id))["state"] == "running", "node 2 must stop mid-job"
    second = await stop_node_and_wait_ready(cluster, node2, stack, http)
    assert second <= READY_AGAIN_WITHIN_S, f"ready again {second:.1f}s after node 2 stopped"

    await assert_invariants(
        api,
        stack,
        cluster.any_running(),
        job_id,
        {lead["id"] for lead in leads},
        csv_name="cluster",
        webhook=webhook,
        timeout_s=300,
    )
    prefix = stack.env["LEADFLOW_BROKER_PREFIX"]
    counts = await asyncio.to_thread(cluster.queues, prefix)
    left = {
        name: c
        for name, c in counts.items()
        if name != f"{prefix}.control" and (c["messages_ready"] or c["messages_unacknowledged"])
    }
    assert left == {}, "no message left in any lane, retry tier, suspect or dead queue"
