"""Usage metering: per tenant and UTC day, pages and leads scraped, leads enriched, paid
provider calls. An event that carries usage is counted once, by its event id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime

from shared.dbapi import Connection
from shared.store import insert_rows


class UsageBook:
    """A batch's usage, added up and written in two statements at the end (`record`)
    rather than two per event."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[str, dict[str, int]]] = {}
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, tenant: str, counts: Mapping[str, int], event_id: str = "") -> None:
        """Count `counts`; with `event_id`, only if that event was not counted before (a
        redelivery, here or in an earlier batch)."""
        counts = {metric: n for metric, n in counts.items() if n}
        if not counts:
            return
        if event_id:
            self._events.setdefault(event_id, (tenant, counts))
            return
        for metric, n in counts.items():
            self._counts[tenant, metric] += n

    def record(self, conn: Connection) -> None:
        day = datetime.now(UTC).date().isoformat()
        counts = Counter(self._counts)
        if self._events:
            new = insert_rows(
                conn,
                "INSERT INTO usage_events (event_id, day)",
                [(event_id, day) for event_id in self._events],
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                types=("text", "text"),
            )
            for row in new:
                tenant, by_metric = self._events[row[0]]
                for metric, n in by_metric.items():
                    counts[tenant, metric] += n
        if counts:
            # One row per (tenant, metric): a multi-row upsert may touch a row only once.
            insert_rows(
                conn,
                "INSERT INTO usage (tenant, day, metric, count)",
                [(tenant, day, metric, n) for (tenant, metric), n in sorted(counts.items())],
                "ON CONFLICT (tenant, day, metric)"
                " DO UPDATE SET count = usage.count + excluded.count",
                types=("text", "text", "text", "bigint"),
            )


def provider_metrics(calls: Mapping[str, int]) -> dict[str, int]:
    return {f"provider_calls:{provider}": n for provider, n in calls.items()}
