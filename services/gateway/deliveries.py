"""Control of a job's webhook deliveries: stop the pending ones, rotate a secret.

- A completed job may still have webhook batches waiting for a slow or failing receiver
  (retried until the retry window ends). `POST /v1/jobs/{id}/cancel` on it cancels those
  (`cancel_pending_deliveries`); a delivery already in flight may still arrive, and its
  outcome is then ignored.
- `PUT /v1/jobs/{id}/destinations/{index}/secret` replaces a webhook destination's secret
  (sealed, shared/secretbox.py). For `overlap_s` the old one stays valid: the router signs
  with both, space-separated in `webhook-signature`, as Standard Webhooks allows, so a
  receiver can switch over without missing a batch.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import msgspec

from services.gateway.errors import DestinationNotFound, NotAWebhook
from shared.dbapi import Connection
from shared.jobs import JobStatus, WebhookDestination, WebhookSecret
from shared.secretbox import SecretBox
from shared.store import decode_spec, epoch_s, iso

CANCELLED_DELIVERIES = "pending deliveries cancelled by the user"
DEFAULT_OVERLAP_S = 3600
MAX_OVERLAP_S = 7 * 86400


class CancelledDeliveries(msgspec.Struct, frozen=True, kw_only=True):
    batches: int
    leads: int


class DeliveriesCancelled(JobStatus, frozen=True, kw_only=True):
    """The answer to a cancel of a completed job: the job, and what was stopped."""

    cancelled_deliveries: CancelledDeliveries


class SecretRotation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    secret: WebhookSecret
    overlap_s: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=MAX_OVERLAP_S,
            description="Seconds the old secret still signs beside the new one.",
        ),
    ] = DEFAULT_OVERLAP_S


class SecretRotated(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    destination: int
    # Until when batches carry the old secret's signature too (null: not at all).
    previous_secret_until: str | None


def cancel_pending_deliveries(conn: Connection, job_id: str) -> CancelledDeliveries:
    rows = conn.execute(
        "UPDATE webhook_batches SET state = 'cancelled', lease_until = 0"
        " WHERE job_id = ? AND state = 'pending' RETURNING dest_idx, size",
        (job_id,),
    ).fetchall()
    leads: Counter[int] = Counter()
    for dest_idx, size in rows:
        leads[dest_idx] += size
    conn.executemany(
        "UPDATE destinations SET cancelled = cancelled + ?, last_error = ?"
        " WHERE job_id = ? AND idx = ?",
        [(n, CANCELLED_DELIVERIES, job_id, idx) for idx, n in leads.items()],
    )
    return CancelledDeliveries(batches=len(rows), leads=leads.total())


def rotate_secret(
    conn: Connection,
    job_id: str,
    index: int,
    rotation: SecretRotation,
    box: SecretBox,
) -> SecretRotated:
    row = conn.execute(
        "SELECT d.type, d.secret, j.spec FROM destinations d JOIN jobs j ON j.job_id = d.job_id"
        " WHERE d.job_id = ? AND d.idx = ?",
        (job_id, index),
    ).fetchone()
    if row is None:
        raise DestinationNotFound(job_id=job_id, index=str(index))
    if row["type"] != "webhook":
        raise NotAWebhook(job_id=job_id, index=index, kind=row["type"])
    current: str | None = row["secret"]
    if current is None:
        # Recorded before secrets were sealed: the plain one is in the spec.
        dest = decode_spec(row["spec"]).destinations[index]
        if isinstance(dest, WebhookDestination) and dest.secret is not None:
            current = box.seal(dest.secret)
    until = epoch_s() + rotation.overlap_s if current and rotation.overlap_s else None
    conn.execute(
        "UPDATE destinations SET secret = ?, previous_secret = ?, previous_secret_until = ?"
        " WHERE job_id = ? AND idx = ?",
        (box.seal(rotation.secret), current if until else None, until, job_id, index),
    )
    return SecretRotated(job_id=job_id, destination=index, previous_secret_until=iso(until))
