"""What the router does with a batch of events: record, export, hand to delivery."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from services.router.destinations.csv import CsvExporter
from services.router.destinations.webhook import WebhookDispatcher
from services.router.ledger import record_events
from shared.broker import Outgoing
from shared.health import Metrics
from shared.messages import Message
from shared.store import Store


class EventHandler:
    def __init__(
        self, store: Store, csv: CsvExporter, webhooks: WebhookDispatcher, metrics: Metrics
    ) -> None:
        self.outcomes = Counter(
            "leadflow_lead_outcomes_total",
            "Lead outcomes stored (each lead once), by status.",
            ["status"],
            registry=metrics.registry,
        )
        self.store = store
        self.csv = csv
        self.webhooks = webhooks

    async def __call__(self, events: list[Message]) -> Sequence[Outgoing]:
        recorded = await self.store.transaction(lambda conn: record_events(conn, events))
        for status, count in recorded.outcomes.items():
            self.outcomes.labels(status=status).inc(count)
        # The CSV catches up from the store, so a sync interrupted by a crash is redone
        # by the redelivered events of the same jobs.
        for job_id in sorted(recorded.touched):
            await self.csv.sync(job_id)
        self.webhooks.nudge()
        return recorded.outgoing
