"""Daily summary files (`LEADFLOW_DAILY_EXPORTS=true`): once a UTC day is over, each tenant
that got outcomes that day gets `exports/<tenant>/daily/<date>.csv`, the same leads as
`GET /v1/daily/<date>?format=csv` (shared/daily.py).

An upkeep duty. A file is written to a temporary name and renamed into place, then recorded
in `daily_exports`, so a crash leaves either no file (written again next round) or a whole
one; a day recorded is never written again. Days up to `LOOKBACK_DAYS` back are caught up
after downtime. The duty looks at most once a minute: nothing changes in between.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import aiofiles
import aiofiles.os

from shared.daily import daily_rows, tenants_with_outcomes
from shared.dbapi import Connection
from shared.logging import get_logger
from shared.results import decode_result, encode_csv, field_map
from shared.store import Store, epoch_s

log = get_logger(__name__)
LOOKBACK_DAYS = 3
CHECK_EVERY_S = 60.0
ROWS_PER_READ = 5000


class DailyExporter:
    def __init__(self, store: Store, exports_dir: Path) -> None:
        self.store = store
        self.exports_dir = exports_dir
        self._checked_at = -CHECK_EVERY_S

    def path_for(self, tenant: str, day: date) -> Path:
        return self.exports_dir / tenant / "daily" / f"{day.isoformat()}.csv"

    async def check(self) -> None:
        if time.monotonic() - self._checked_at < CHECK_EVERY_S:
            return
        today = datetime.now(UTC).date()
        for back in range(1, LOOKBACK_DAYS + 1):
            day = today - timedelta(days=back)
            for tenant in await self.store.run(partial(not_written, day=day)):
                await self.write(tenant, day)
        self._checked_at = time.monotonic()

    async def write(self, tenant: str, day: date) -> None:
        path = self.path_for(tenant, day)
        await aiofiles.os.makedirs(path.parent, exist_ok=True)
        unfinished = path.with_suffix(".csv.partial")
        fields = field_map(None)
        written = 0
        async with aiofiles.open(unfinished, "wb") as out:
            await out.write(encode_csv([], fields, header=True))
            after: int | None = None
            while True:
                rows = await self.store.run(
                    partial(daily_rows, tenant=tenant, day=day, limit=ROWS_PER_READ, after=after)
                )
                if not rows:
                    break
                await out.write(
                    encode_csv([decode_result(d) for _, d in rows], fields, header=False)
                )
                written += len(rows)
                after = rows[-1][0]
            await out.flush()
            await aiofiles.os.wrap(os.fsync)(out.fileno())
        await aiofiles.os.replace(unfinished, path)
        await self.store.transaction(lambda conn: mark_written(conn, tenant, day))
        log.info("daily.exported", tenant=tenant, day=day.isoformat(), leads=written)


def not_written(conn: Connection, *, day: date) -> list[str]:
    done = {
        row[0]
        for row in conn.execute(
            "SELECT tenant FROM daily_exports WHERE day = ?", (day.isoformat(),)
        ).fetchall()
    }
    return [tenant for tenant in tenants_with_outcomes(conn, day) if tenant not in done]


def mark_written(conn: Connection, tenant: str, day: date) -> None:
    conn.execute(
        "INSERT INTO daily_exports (tenant, day, written_at) VALUES (?, ?, ?)"
        " ON CONFLICT (tenant, day) DO NOTHING",
        (tenant, day.isoformat(), epoch_s()),
    )
