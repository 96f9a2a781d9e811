"""The router's periodic duties, one loop: deadlines, dependencies, stalls, alerts, gauges,
retention.

Each duty is a `check()` that does nothing when there is nothing to do; one failing
round (broker down, store unavailable) is logged and the next round tries again; the
loop itself runs supervised, so whatever escapes it is logged and it starts again. With a second
router as a hot standby, only the holder of the upkeep lease (a row in the store, renewed
every round) runs the duties, so a job is not released twice nor an alert sent twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from shared.dbapi import Connection
from shared.errors import BrokerUnavailable, StoreUnavailable
from shared.logging import get_logger
from shared.store import Store, StoreError, db_now

log = get_logger(__name__)
Check = Callable[[], Awaitable[None]]
LEASE = "upkeep"


async def run_upkeep(store: Store, interval_s: float, checks: Sequence[tuple[str, Check]]) -> None:
    owner = uuid.uuid4().hex
    lease_s = max(5.0, 5 * interval_s)
    while True:
        await asyncio.sleep(interval_s)
        for name, check in checks:
            # Renewed before each duty, not once a round: a round that outlasts the lease
            # (a slow duty, a long store wait) stops as soon as another router took the
            # lease over, so no duty runs on two routers at once.
            if not await holds_lease(store, owner, lease_s):
                break  # another router does the upkeep
            try:
                await check()
            except (StoreUnavailable, BrokerUnavailable) as e:  # infrastructure: next round
                log.warning("upkeep.postponed", duty=name, error=str(e))
            except Exception:  # one duty failing must not stop the others; logged
                log.exception("upkeep.failed", duty=name)


async def holds_lease(store: Store, owner: str, lease_s: float) -> bool:
    try:
        return await store.transaction(partial(claim_lease, owner=owner, lease_s=lease_s))
    except StoreUnavailable as e:
        log.warning("upkeep.store_unavailable", error=str(e))
    except StoreError:
        log.exception("upkeep.lease_failed")
    return False


def claim_lease(conn: Connection, owner: str, lease_s: float) -> bool:
    """Take or renew the lease: ours if free, expired or already ours. Times are the
    database's (`db_now`): routers on machines with skewed clocks agree on expiry."""
    now = db_now(conn)
    conn.execute(
        "INSERT INTO upkeep_leases (name, owner, until) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until"
        " WHERE upkeep_leases.owner = excluded.owner OR upkeep_leases.until < ?",
        (LEASE, owner, now + lease_s, now),
    )
    row = conn.execute("SELECT owner FROM upkeep_leases WHERE name = ?", (LEASE,)).fetchone()
    return bool(row[0] == owner)
