"""What the router does with a batch of events: record, export, hand to delivery."""

from __future__ import annotations

from collections.abc import Sequence

from services.router.destinations.csv import CsvExporter
from services.router.destinations.webhook import WebhookDispatcher
from services.router.ledger import record_events
from shared.broker import Outgoing
from shared.messages import Message
from shared.store import Store


class EventHandler:
    def __init__(self, store: Store, csv: CsvExporter, webhooks: WebhookDispatcher) -> None:
        self.store = store
        self.csv = csv
        self.webhooks = webhooks

    async def __call__(self, events: list[Message]) -> Sequence[Outgoing]:
        touched, outgoing = await self.store.transaction(lambda conn: record_events(conn, events))
        # The CSV catches up from the store, so a sync interrupted by a crash is redone
        # by the redelivered events of the same jobs.
        for job_id in sorted(touched):
            await self.csv.sync(job_id)
        self.webhooks.nudge()
        return outgoing
