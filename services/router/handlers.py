"""What the router does with a batch of events: record, export, hand to delivery.

A disk that cannot take the CSV exports (full, read-only, failing) is store trouble like
the database's own: raised as `StoreUnavailable`, so the batch is held and tried again
instead of spending the events' attempts.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from prometheus_client import Counter

from services.router.destinations.csv import CsvExporter
from services.router.destinations.webhook import WebhookDispatcher
from services.router.ledger import Recorded, record_events
from shared.broker import Outgoing
from shared.dbapi import Connection
from shared.errors import StoreUnavailable
from shared.health import Metrics
from shared.messages import Message
from shared.store import Store

# Errors of the disk itself, not of a file name or of the data.
DISK_TROUBLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class EventHandler:
    def __init__(
        self,
        store: Store,
        csv: CsvExporter,
        webhooks: WebhookDispatcher,
        metrics: Metrics,
        enrich_batch_size: int = 25,
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
        self.enrich_batch_size = enrich_batch_size

    async def __call__(self, events: list[Message]) -> Sequence[Outgoing]:
        def record(conn: Connection) -> tuple[Recorded, OSError | None]:
            recorded = record_events(conn, events, self.enrich_batch_size, self.csv.specs)
            # The CSV catches up from the store, so an export interrupted by a crash is
            # redone by the redelivered events of the same jobs. A CSV to rewrite waits for
            # its job to be quiet (the router's upkeep: CsvExporter.catch_up).
            for job_id in sorted(recorded.touched - recorded.rewrites):
                if (error := self.csv.export(conn, job_id)) is not None:
                    return recorded, error
            return recorded, None

        recorded, error = await self.store.transaction(record)
        for status, count in recorded.outcomes.items():
            self.outcomes.labels(status=status).inc(count)
        if error is not None:
            if error.errno not in DISK_TROUBLE:
                raise error
            raise StoreUnavailable(f"exports unavailable: {error}") from error
        self.webhooks.nudge()
        return recorded.outgoing
