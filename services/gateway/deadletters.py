"""`GET /v1/dead-letters` and `POST /v1/dead-letters/replay`.

The router parks every dead-lettered message in the store; here a tenant lists its own
and sends them back to work (by job or by ids). A replay publishes the original message
again, with its attempts reset; the router then upgrades any lead recorded as failed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from services.gateway.errors import NoParkedDeadLetters, NotSent
from services.gateway.keys import BROKER, STORE, tenant_of
from services.gateway.params import (
    CURSOR,
    DEAD_LETTERS_JOB,
    DEAD_LETTERS_LIMIT,
    DEAD_LETTERS_STATE,
)
from services.gateway.problems import FieldError, invalid
from services.gateway.queries import encode_cursor
from services.gateway.routes import json_response
from services.gateway.validation import decode_request
from shared.broker import Outgoing, Publish
from shared.dbapi import Connection, Row
from shared.errors import BrokerUnavailable
from shared.messages import Codec
from shared.store import utc_now

_codec = Codec()
_decode_list = msgspec.json.Decoder(list[str]).decode


# SQLite integers are 64-bit: a larger id is refused as invalid, not a 500.
DeadLetterId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    job_id: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    ids: Annotated[list[DeadLetterId], msgspec.Meta(min_length=1, max_length=1000)] | None = None


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    queue: str
    job_id: str | None
    message_type: str | None
    lead_ids: list[str]
    error: str | None
    attempts: int
    history: list[str]
    dead_at: str
    state: Literal["parked", "replayed"]
    replayed_at: str | None


class DeadLetterPage(msgspec.Struct, frozen=True, kw_only=True):
    dead_letters: list[DeadLetterView]
    next_cursor: str | None


class Skipped(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    reason: str


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    replayed: list[int]
    skipped: list[Skipped]


async def list_dead_letters(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    job_id = DEAD_LETTERS_JOB.read(request)
    state = DEAD_LETTERS_STATE.read(request)
    limit = DEAD_LETTERS_LIMIT.read(request)
    after = CURSOR.read(request)
    rows = await request.app[STORE].run(
        lambda conn: select_letters(
            conn, tenant, job_id=job_id, state=state, after=after, limit=limit + 1
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response(
        DeadLetterPage(
            dead_letters=[letter_view(row) for row in rows],
            next_cursor=encode_cursor(rows[-1]["id"]) if more else None,
        )
    )


async def replay_dead_letters(request: web.Request) -> web.Response:
    body = decode_request(await request.read(), ReplayRequest)
    if (body.job_id is None) == (body.ids is None):
        raise invalid([FieldError("body", "give either job_id or ids")])
    tenant = tenant_of(request)
    store = request.app[STORE]

    def claim(conn: Connection) -> list[Row]:
        # Claimed (marked replayed) before publishing: two replays at once send each once.
        rows = select_letters(conn, tenant, job_id=body.job_id, ids=body.ids, state="parked")
        mark_replayed(conn, [row["id"] for row in rows])
        return rows

    rows = await store.transaction(claim)
    if not rows:
        raise NoParkedDeadLetters()
    outgoing: list[Outgoing] = []
    replayed: list[int] = []
    skipped: list[Skipped] = []
    for row in rows:
        try:
            message = _codec.decode(row["body"])
        except msgspec.DecodeError as e:
            skipped.append(Skipped(id=row["id"], reason=f"not a leadflow message: {e}"))
            continue
        outgoing.append(Publish(message, priority=row["priority"] or "normal"))
        replayed.append(row["id"])
    try:
        await request.app[BROKER].publish(outgoing)
    except BrokerUnavailable as e:
        await store.transaction(lambda conn: unmark(conn, [row["id"] for row in rows]))
        raise NotSent(f"the dead letters could not be sent back to work: {e}") from e
    if skipped:  # not sent anywhere: they stay parked
        await store.transaction(lambda conn: unmark(conn, [s.id for s in skipped]))
    return json_response(ReplayResult(replayed=replayed, skipped=skipped), status=202)


def select_letters(
    conn: Connection,
    tenant: str,
    *,
    job_id: str | None = None,
    ids: list[int] | None = None,
    state: str | None = None,
    after: int | None = None,
    limit: int = 1000,
) -> list[Row]:
    sql = (
        "SELECT d.*, j.priority FROM dead_letters d LEFT JOIN jobs j ON j.job_id = d.job_id"
        " WHERE d.tenant = ? AND d.id > ?"
    )
    params: list[Any] = [tenant, after or 0]
    if job_id is not None:
        sql += " AND d.job_id = ?"
        params.append(job_id)
    if ids is not None:
        sql += f" AND d.id IN ({', '.join('?' * len(ids))})"
        params.extend(ids)
    if state is not None:
        sql += " AND d.state = ?"
        params.append(state)
    sql += " ORDER BY d.id LIMIT ?"
    params.append(limit)
    rows: list[Row] = conn.execute(sql, params).fetchall()
    return rows


def mark_replayed(conn: Connection, ids: list[int]) -> None:
    now = utc_now()
    conn.executemany(
        "UPDATE dead_letters SET state = 'replayed', replayed_at = ? WHERE id = ?",
        [(now, i) for i in ids],
    )


def unmark(conn: Connection, ids: list[int]) -> None:
    conn.executemany(
        "UPDATE dead_letters SET state = 'parked', replayed_at = NULL WHERE id = ?",
        [(i,) for i in ids],
    )


def letter_view(row: Row) -> DeadLetterView:
    return DeadLetterView(
        id=row["id"],
        queue=row["queue"],
        job_id=row["job_id"],
        message_type=row["message_type"],
        lead_ids=_decode_list(row["lead_ids"]),
        error=row["error"],
        attempts=row["attempts"],
        history=_decode_list(row["history"]),
        dead_at=row["dead_at"],
        state=row["state"],
        replayed_at=row["replayed_at"],
    )
