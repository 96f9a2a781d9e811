"""`leadflow_jobs{state}`: how many jobs are in each state, refreshed by the upkeep loop."""

from __future__ import annotations

import time

from prometheus_client import Gauge

from shared.dbapi import Connection
from shared.health import Metrics
from shared.jobs import JOB_STATES
from shared.store import Store

EVERY_S = 5.0


class JobGauges:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.jobs = Gauge(
            "leadflow_jobs", "Jobs in the store, by state.", ["state"], registry=metrics.registry
        )
        self._last = -EVERY_S

    async def check(self) -> None:
        if time.monotonic() - self._last < EVERY_S:
            return
        self._last = time.monotonic()
        counts = await self.store.run(count_by_state)
        for state in JOB_STATES:
            self.jobs.labels(state=state).set(counts.get(state, 0))


def count_by_state(conn: Connection) -> dict[str, int]:
    return {
        row[0]: row[1] for row in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
    }
