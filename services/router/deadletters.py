"""Keeps dead letters: moves every message that lands in a dead-letter queue into the
store, where `GET /v1/dead-letters` lists them per tenant and a replay sends them back.

A queue cannot be listed without consuming it, so the DLQs are a durable hand-off and
the store is the parking lot. A row is keyed by the dead message's id, so a redelivery
after a crash parks nothing twice. While the store is unavailable a dead letter is held
(not acked) and parked once the store takes it.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from aio_pika.abc import AbstractIncomingMessage

from shared.broker import ERROR_HEADER, HISTORY_HEADER, Broker, settle
from shared.consumer import STORE_BACKOFF
from shared.dbapi import Connection
from shared.errors import StoreUnavailable
from shared.logging import get_logger
from shared.messages import Codec, EnrichTask, LeadOutcomes, routing_key
from shared.store import Store, utc_now

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode
PREFETCH = 50


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    queue: str
    tenant: str | None
    job_id: str | None
    message_type: str | None
    lead_ids: list[str]
    error: str
    history: list[str]
    body: bytes


class DeadLetterKeeper:
    def __init__(self, broker: Broker, store: Store, codec: Codec) -> None:
        self.broker = broker
        self.store = store
        self.codec = codec
        self._consuming: set[str] = set()

    async def start(self) -> None:
        """Consume every dead-letter queue; safe to call again after a failed try."""
        for work_queue in self.broker.topology.dead_letter_sources():
            if work_queue in self._consuming:
                continue
            dead_queue = self.broker.topology.dead_queue(work_queue)
            queue = await self.broker.consume_channel(dead_queue, PREFETCH)
            await queue.consume(partial(self._keep, work_queue))
            self._consuming.add(work_queue)

    async def _keep(self, work_queue: str, message: AbstractIncomingMessage) -> None:
        letter = self.describe(work_queue, message)
        tries = 0
        while True:
            try:
                await self.store.transaction(lambda conn: park(conn, letter))
                break
            except StoreUnavailable as e:
                tries += 1
                delay = STORE_BACKOFF.delay_s(tries)
                log.warning("dead_letter.store_unavailable_holding", error=str(e), retry_in_s=delay)
                await asyncio.sleep(delay)
        log.warning(
            "dead_letter.parked",
            queue=work_queue,
            job_id=letter.job_id,
            leads=len(letter.lead_ids),
            error=letter.error,
        )
        await settle(message)

    def describe(self, work_queue: str, message: AbstractIncomingMessage) -> DeadLetter:
        headers = message.headers or {}
        history = headers.get(HISTORY_HEADER)
        tenant = job_id = kind = None
        lead_ids: list[str] = []
        try:
            decoded = self.codec.decode(message.body)
        except msgspec.DecodeError:
            pass
        else:
            tenant, job_id, kind = decoded.tenant, decoded.job_id, routing_key(decoded)
            if isinstance(decoded, EnrichTask | LeadOutcomes):
                lead_ids = [lead.id for lead in decoded.leads]
        return DeadLetter(
            message_id=message.message_id or hashlib.sha256(message.body).hexdigest(),
            queue=work_queue,
            tenant=tenant,
            job_id=job_id,
            message_type=kind,
            lead_ids=lead_ids,
            error=str(headers.get(ERROR_HEADER) or broker_reason(headers)),
            history=[str(h) for h in history] if isinstance(history, list) else [],
            body=message.body,
        )


def broker_reason(headers: dict[str, Any]) -> str:
    """Why the broker itself dead-lettered a message (e.g. a quorum delivery limit)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"dead-lettered by the broker: {deaths[0].get('reason', 'unknown')}"
    return "dead-lettered (no reason recorded)"


def park(conn: Connection, letter: DeadLetter) -> None:
    conn.execute(
        "INSERT INTO dead_letters (message_id, queue, tenant, job_id, message_type, lead_ids,"
        " error, attempts, history, body, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (message_id) DO NOTHING",
        (
            letter.message_id,
            letter.queue,
            letter.tenant,
            letter.job_id,
            letter.message_type,
            _encode(letter.lead_ids),
            letter.error,
            max(1, len(letter.history)),
            _encode(letter.history),
            letter.body,
            utc_now(),
        ),
    )
