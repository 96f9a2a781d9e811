"""Usage metering: per tenant and UTC day, pages and leads scraped, leads enriched, paid
provider calls. An event that carries usage is counted once, by its event id."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from shared.dbapi import Connection


def add_usage(conn: Connection, tenant: str, counts: Mapping[str, int], event_id: str = "") -> None:
    day = datetime.now(UTC).date().isoformat()
    if (
        event_id
        and not conn.execute(
            "INSERT INTO usage_events (event_id, day) VALUES (?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (event_id, day),
        ).rowcount
    ):
        return  # this event was counted already (a redelivery)
    conn.executemany(
        "INSERT INTO usage (tenant, day, metric, count) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (tenant, day, metric) DO UPDATE SET count = usage.count + excluded.count",
        [(tenant, day, metric, n) for metric, n in counts.items() if n],
    )


def provider_metrics(calls: Mapping[str, int]) -> dict[str, int]:
    return {f"provider_calls:{provider}": n for provider, n in calls.items()}
