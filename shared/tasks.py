"""Turning leads into work: enrich tasks of a few leads each, and the lane announcements
workers need to find a tenant's lane. Used by whoever starts work (gateway, scraper,
router releasing a dependent job)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from shared.broker import Outgoing, Publish, TaskPublisher
from shared.jobs import DEFAULT_EMAIL_POLICY
from shared.messages import EnrichTask, LaneOpened, Lead

ANNOUNCE_EVERY_S = 3600.0
# A big job travels in bigger tasks. Each task costs a message each way, a provider request
# and a few store turns whatever its size, so 100 leads a task cost well under the CPU per
# lead of 25 (bench `cpu`). A smaller job keeps the configured size, so that it still
# makes enough tasks to spread over every worker's slots (the provider-bound bench).
LARGEST_TASK = 100
TASKS_TO_SPREAD = 200


def task_size(leads: int, configured: int) -> int:
    """Leads per enrich task for a job of `leads`: `LEADFLOW_TASK_BATCH_SIZE` at least,
    up to LARGEST_TASK while the job still makes TASKS_TO_SPREAD tasks."""
    return max(configured, min(LARGEST_TASK, leads // TASKS_TO_SPREAD))


def enrich_tasks(
    job_id: str,
    tenant: str,
    leads: Sequence[Lead],
    batch_size: int,
    priority: str,
    email_policy: str = DEFAULT_EMAIL_POLICY,
) -> list[Outgoing]:
    """The job's leads in tasks of `task_size(len(leads), batch_size)`."""
    batch_size = task_size(len(leads), batch_size)
    return [
        Publish(
            EnrichTask(
                job_id=job_id,
                tenant=tenant,
                leads=list(leads[i : i + batch_size]),
                email_policy=email_policy,
            ),
            priority=priority,
        )
        for i in range(0, len(leads), batch_size)
    ]


class Lanes:
    """Declares a tenant's lanes and announces them on the control stream, again now and
    then, so a worker that starts after the stream forgot the first notice still learns."""

    def __init__(self, broker: TaskPublisher) -> None:
        self.broker = broker
        self._announced: dict[tuple[str, str], float] = {}

    async def open(self, kinds: Sequence[str], tenant: str, job_id: str) -> list[Outgoing]:
        """Make sure the lanes exist; returns the announcements to publish with the tasks
        (call `announced` once the broker confirmed them)."""
        notices: list[Outgoing] = []
        now = time.monotonic()
        for kind in kinds:
            await self.broker.ensure_lane(kind, tenant)
            if now - self._announced.get((kind, tenant), -ANNOUNCE_EVERY_S) >= ANNOUNCE_EVERY_S:
                notices.append(Publish(LaneOpened(job_id=job_id, tenant=tenant, kind=kind)))
        return notices

    def announced(self, notices: Sequence[Outgoing]) -> None:
        now = time.monotonic()
        for notice in notices:
            lane = notice.message
            assert isinstance(lane, LaneOpened)
            self._announced[(lane.kind, lane.tenant)] = now
