"""Alerts: a job that failed, timed out, stalled or was paused by a credit budget, and a
destination given up, are logged and posted to `LEADFLOW_ALERT_WEBHOOK_URL` (a
Slack-compatible `{"text": ...}` body) once each: the alert is remembered per (job, kind) when sent.

The post goes through the webhooks' guard like a webhook does (the session's resolver,
the IP-literal check, no redirects): an alert text carries tenants' job ids and errors,
and a redirect must not carry them, or the request, into the private network."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import aiohttp

from shared.dbapi import Connection, Row
from shared.jobstate import PAUSED, state_in
from shared.logging import get_logger
from shared.netguard import NetGuard, TargetRefused
from shared.store import Store, epoch_s, iso, utc_now

log = get_logger(__name__)
ALERT_TIMEOUT_S = 10.0
CHECK_EVERY_S = 2.0
# Jobs that ended recently: a first start on an old store must not page for history.
RECENT_S = 86400.0


@dataclass(frozen=True)
class Alert:
    job_id: str
    tenant: str
    kind: str
    text: str


class Alerter:
    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        url: str | None,
        guard: NetGuard,
    ) -> None:
        """`session` must resolve through `GuardedResolver(guard)` (the webhooks' session)."""
        self.store = store
        self.session = session
        self.url = url
        self.guard = guard
        self._last = 0.0

    async def check(self) -> None:
        if time.monotonic() - self._last < CHECK_EVERY_S:
            return
        self._last = time.monotonic()
        for alert in await self.store.run(due_alerts):
            if await self.send(alert):
                await self.store.transaction(partial(remember, alert=alert))

    async def send(self, alert: Alert) -> bool:
        log.warning(
            "alert", job_id=alert.job_id, tenant=alert.tenant, kind=alert.kind, text=alert.text
        )
        if self.url is None:
            return True
        try:
            self.guard.check_literal_host(self.url)
            async with self.session.post(
                self.url,
                json={"text": alert.text},
                timeout=aiohttp.ClientTimeout(total=ALERT_TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return True
                log.error("alert.post_failed", job_id=alert.job_id, status=response.status)
        except TargetRefused as e:
            log.error("alert.post_failed", job_id=alert.job_id, error=f"refused target: {e}")
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            log.error("alert.post_failed", job_id=alert.job_id, error=f"{type(e).__name__}: {e}")
        return False  # tried again on the next round


def remember(conn: Connection, alert: Alert) -> None:
    conn.execute(
        "INSERT INTO alerts (job_id, kind, sent_at) VALUES (?, ?, ?)"
        " ON CONFLICT (job_id, kind) DO NOTHING",
        (alert.job_id, alert.kind, utc_now()),
    )


def due_alerts(conn: Connection) -> list[Alert]:
    """What deserves an alert and has not had one (each query served by an index)."""
    alerts: list[Alert] = []
    for row in conn.execute(
        "SELECT job_id, tenant, state, error FROM jobs j WHERE state IN ('failed', 'timed_out')"
        " AND finished_at >= ?"
        " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.job_id = j.job_id AND a.kind = j.state)",
        (iso(epoch_s() - RECENT_S),),
    ):
        alerts.append(job_alert(row, row["state"], row["error"]))
    for row in conn.execute(
        "SELECT job_id, tenant, stall_reason FROM jobs j WHERE stalled = 1"
        " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.job_id = j.job_id AND a.kind = 'stalled')"
    ):
        alerts.append(job_alert(row, "stalled", row["stall_reason"]))
    for row in conn.execute(
        f"SELECT job_id, tenant, paused_reason FROM jobs j WHERE {state_in([PAUSED])}"
        " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.job_id = j.job_id AND a.kind = ?)",
        (PAUSED,),
    ):
        reason = f"credit {str(row['paused_reason']).replace('_', ' ')}"
        alerts.append(job_alert(row, PAUSED, reason))
    for row in conn.execute(
        "SELECT d.job_id, j.tenant, d.idx, d.type, d.failed, d.last_error FROM destinations d"
        " JOIN jobs j ON j.job_id = d.job_id WHERE d.failed > 0"
        " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.job_id = d.job_id"
        " AND a.kind = 'destination:' || d.idx)"
    ):
        text = (
            f"leadflow: job {row['job_id']} ({row['tenant']}): {row['type']} destination "
            f"#{row['idx']} given up for {row['failed']} leads: {row['last_error']}"
        )
        alerts.append(Alert(row["job_id"], row["tenant"], f"destination:{row['idx']}", text))
    return alerts


def job_alert(row: Row, kind: str, reason: str | None) -> Alert:
    text = f"leadflow: job {row['job_id']} ({row['tenant']}) {kind}: {reason}"
    return Alert(row["job_id"], row["tenant"], kind, text)
