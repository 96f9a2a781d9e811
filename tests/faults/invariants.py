"""What must hold after every fault: each accepted lead has exactly one outcome, the CSV
holds each lead once, the webhook got every lead with a stable id per batch, the job is
terminal, and no message is left ready or unacked in any work queue."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from pathlib import Path
from typing import Any

from devtools.stack import Stack
from tests.broker_node import BrokerNode
from tests.helpers import Api, WebhookReceiver, wait_until


async def assert_invariants(
    api: Api,
    stack: Stack,
    node: BrokerNode,
    job_id: str,
    lead_ids: set[str],
    *,
    csv_name: str | None = None,
    webhook: WebhookReceiver | None = None,
    webhook_dest: int = 0,
    timeout_s: float = 120,
) -> dict[str, Any]:
    job = await api.wait_job(job_id, timeout_s=timeout_s)
    assert job["state"] == "completed", job

    leads = await api.all_leads(job_id)
    counted = Counter(lead["id"] for lead in leads)
    assert set(counted) == lead_ids, "every accepted lead has an outcome"
    assert max(counted.values()) == 1, "and only one"
    progress = job["progress"]
    assert progress["done"] == progress["total"] == len(lead_ids)
    assert progress["enriched"] + progress["failed"] == progress["done"]
    assert progress["failed"] == sum(1 for lead in leads if lead["status"] == "failed")

    if csv_name is not None:
        path = stack.data_dir / "exports" / "default" / f"{csv_name}.csv"

        async def csv_ids() -> Counter[str]:
            # The router syncs the CSV just after the commit that completes the job: a
            # reader may see `completed` first, so wait for the file to catch up.
            ids = Counter(row["id"] for row in read_csv(path)) if path.exists() else Counter()
            return ids if set(ids) >= lead_ids else Counter()

        await wait_until(csv_ids, timeout_s=60, what="the CSV to catch up with the store")
        ids = Counter(row["id"] for row in read_csv(path))
        assert set(ids) == lead_ids, "the CSV has every lead"
        assert max(ids.values()) == 1, "each once"

    if webhook is not None:
        await wait_until(
            lambda: delivered(api, job_id, webhook_dest, len(lead_ids)),
            timeout_s=timeout_s,
            what="webhook delivered",
        )
        assert webhook.lead_ids() == lead_ids, "the webhook got every lead"
        by_id: dict[str, set[frozenset[str]]] = {}
        for batch in webhook.batches:
            by_id.setdefault(batch["id"], set()).add(
                frozenset(lead["id"] for lead in batch["body"]["leads"])
            )
        assert all(len(contents) == 1 for contents in by_id.values()), "stable webhook-id per batch"

    prefix = stack.env["LEADFLOW_BROKER_PREFIX"]
    work = [
        f"{prefix}.enrich.tenant.default",
        f"{prefix}.enrich.suspect",
        f"{prefix}.router.events",
    ]

    async def queues_drained() -> dict[str, dict[str, int]] | None:
        counts = await asyncio.to_thread(node.queues, prefix)
        busy = {
            q: counts[q]
            for q in work
            if counts[q]["messages_ready"] or counts[q]["messages_unacknowledged"]
        }
        return None if busy else counts

    await wait_until(queues_drained, timeout_s=30, what="work queues drained")
    return job


async def delivered(api: Api, job_id: str, index: int, total: int) -> bool:
    """Whether the job's destination at `index` reports every lead delivered."""
    return bool((await api.job(job_id))["destinations"][index]["delivered"] == total)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
