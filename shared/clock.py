"""Time as the status store keeps it: ISO 8601 UTC text with milliseconds for the times a
user reads (created, started, finished), epoch seconds for the ones code compares (leases,
deadlines, progress). One definition, so every writer stores the same format and text
timestamps compare correctly as strings."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_s() -> float:
    return time.time()


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
