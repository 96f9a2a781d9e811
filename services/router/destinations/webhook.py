"""The webhook destination: signed batches, retried with backoff until a retry window ends.

Batches are cut by the ledger (fixed lead ranges, a stable `webhook-id` each); this
dispatcher claims due batches with a lease (so a standby router or a restart never sends
one batch twice at once), posts them signed per Standard Webhooks, and records the
outcome on the batch and on the job's destination status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import sqlite3
import time
from dataclasses import dataclass

import aiohttp
import msgspec
from prometheus_client import Counter

from services.router.config import WebhookSettings
from shared.consumer import RetryPolicy
from shared.health import Metrics
from shared.jobs import WebhookDestination
from shared.logging import get_logger
from shared.netguard import NetGuard, TargetRefused
from shared.results import decode_result, field_map, project
from shared.store import Store, decode_spec, epoch_s

log = get_logger(__name__)
# A claimed batch is someone else's for the call's timeout plus this margin.
LEASE_MARGIN_S = 30.0
IDLE_POLL_S = 1.0
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Batch:
    job_id: str
    dest_idx: int
    batch_no: int
    webhook_id: str
    first_seq: int
    last_seq: int
    size: int
    attempts: int
    created_at: float


class WebhookDispatcher:
    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        guard: NetGuard,
        settings: WebhookSettings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.session = session
        self.guard = guard
        self.settings = settings
        self._wake = asyncio.Event()
        self.backoff = RetryPolicy(
            backoff_base_s=settings.backoff_base_s, backoff_max_s=settings.backoff_max_s
        )
        self._deliveries = Counter(
            "leadflow_webhook_deliveries_total",
            "Webhook batch delivery attempts by outcome.",
            ["outcome"],
            registry=metrics.registry,
        )

    def nudge(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            batches = await self.store.transaction(
                lambda conn: claim_due(
                    conn,
                    epoch_s(),
                    self.settings.concurrency,
                    self.settings.timeout_s + LEASE_MARGIN_S,
                )
            )
            if batches:
                await asyncio.gather(*(self._deliver_logged(batch) for batch in batches))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)

    async def _deliver_logged(self, batch: Batch) -> None:
        """One batch's failure (a store error, a job deleted meanwhile) must not stop the
        dispatcher: it is logged, and the batch's lease runs out for a later try."""
        try:
            await self._deliver(batch)
        except Exception:
            log.exception(
                "webhook.delivery_crashed", job_id=batch.job_id, webhook_id=batch.webhook_id
            )

    async def _deliver(self, batch: Batch) -> None:
        payload = await self.store.run(lambda conn: build_payload(conn, batch))
        if payload is None:
            return  # the job was deleted meanwhile, and its batches with it
        dest, body = payload
        error = await self._post(dest, batch, body)
        now = epoch_s()
        if error is None:
            await self.store.transaction(lambda conn: mark_delivered(conn, batch))
            self._deliveries.labels(outcome="delivered").inc()
            log.info(
                "webhook.delivered",
                job_id=batch.job_id,
                webhook_id=batch.webhook_id,
                leads=batch.size,
            )
        elif now - batch.created_at >= self.settings.retry_window_s:
            await self.store.transaction(lambda conn: mark_given_up(conn, batch, error))
            self._deliveries.labels(outcome="given_up").inc()
            log.error(
                "webhook.given_up", job_id=batch.job_id, webhook_id=batch.webhook_id, error=error
            )
        else:
            delay = self.backoff.backoff_s(batch.attempts + 1)
            await self.store.transaction(lambda conn: mark_retry(conn, batch, error, now + delay))
            self._deliveries.labels(outcome="retry").inc()
            log.warning(
                "webhook.retry",
                job_id=batch.job_id,
                webhook_id=batch.webhook_id,
                error=error,
                retry_in_s=round(delay, 2),
            )

    async def _post(self, dest: WebhookDestination, batch: Batch, body: bytes) -> str | None:
        """POST the batch; None on success, else why it failed."""
        try:
            self.guard.check_literal_host(dest.url)
            headers = signed_headers(batch.webhook_id, body, dest.secret)
            async with self.session.post(
                dest.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except TargetRefused as e:
            return f"refused target: {e}"
        except TimeoutError:
            return f"timed out after {self.settings.timeout_s:g}s"
        except (aiohttp.ClientError, OSError) as e:
            return f"{type(e).__name__}: {e}"


def signed_headers(webhook_id: str, body: bytes, secret: str | None) -> dict[str, str]:
    """Standard Webhooks: HMAC-SHA256 over `id.timestamp.body`, base64, as `v1,<sig>`."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
    }
    if secret:
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
        headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
    return headers


def secret_key(secret: str) -> bytes:
    """`whsec_<base64>` secrets are base64 keys (as the spec issues them); others are raw."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode()


def claim_due(conn: sqlite3.Connection, now: float, limit: int, lease_s: float) -> list[Batch]:
    rows = conn.execute(
        "UPDATE webhook_batches SET lease_until = ? WHERE rowid IN ("
        " SELECT rowid FROM webhook_batches WHERE state = 'pending' AND next_attempt_at <= ?"
        " AND lease_until <= ? ORDER BY next_attempt_at LIMIT ?)"
        " RETURNING job_id, dest_idx, batch_no, webhook_id, first_seq, last_seq, size,"
        " attempts, created_at",
        (now + lease_s, now, now, limit),
    ).fetchall()
    return [Batch(*row) for row in rows]


def build_payload(
    conn: sqlite3.Connection, batch: Batch
) -> tuple[WebhookDestination, bytes] | None:
    job = conn.execute("SELECT spec FROM jobs WHERE job_id = ?", (batch.job_id,)).fetchone()
    if job is None:
        return None
    dest = decode_spec(job["spec"]).destinations[batch.dest_idx]
    assert isinstance(dest, WebhookDestination)
    fields = field_map(dest.fields)
    rows = conn.execute(
        "SELECT data FROM leads WHERE job_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
        (batch.job_id, batch.first_seq, batch.last_seq),
    ).fetchall()
    leads = [project(decode_result(r[0]), fields) for r in rows]
    return dest, _encode({"job_id": batch.job_id, "leads": leads})


def mark_delivered(conn: sqlite3.Connection, batch: Batch) -> None:
    _finish(conn, batch, "delivered", None)


def mark_given_up(conn: sqlite3.Connection, batch: Batch, error: str) -> None:
    _finish(conn, batch, "failed", error)


def _finish(conn: sqlite3.Connection, batch: Batch, state: str, error: str | None) -> None:
    updated = conn.execute(
        "UPDATE webhook_batches SET state = ?, attempts = attempts + 1, last_error = ?,"
        " lease_until = 0 WHERE job_id = ? AND dest_idx = ? AND batch_no = ? AND state = 'pending'",
        (state, error, batch.job_id, batch.dest_idx, batch.batch_no),
    ).rowcount
    if not updated:
        return
    column = "delivered" if state == "delivered" else "failed"
    conn.execute(
        f"UPDATE destinations SET {column} = {column} + ?,"
        " last_error = COALESCE(?, last_error) WHERE job_id = ? AND idx = ?",
        (batch.size, error, batch.job_id, batch.dest_idx),
    )


def mark_retry(conn: sqlite3.Connection, batch: Batch, error: str, next_at: float) -> None:
    conn.execute(
        "UPDATE webhook_batches SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
        " lease_until = 0 WHERE job_id = ? AND dest_idx = ? AND batch_no = ?",
        (error, next_at, batch.job_id, batch.dest_idx, batch.batch_no),
    )
    conn.execute(
        "UPDATE destinations SET last_error = ? WHERE job_id = ? AND idx = ?",
        (error, batch.job_id, batch.dest_idx),
    )
