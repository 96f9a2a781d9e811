"""Saved searches: `POST/GET /v1/schedules`, `GET/DELETE /v1/schedules/{id}`.

The gateway validates a schedule as it would its scrape job (the same checks, errors named
under `job.`) and records it with its first run due at once; the router's scheduler
(services/router/schedules.py) runs it from then on. Webhook secrets are sealed before the
job body is stored, as a job's are; a run's job gets them back sealed.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from typing import Annotated, Any

import msgspec
from aiohttp import web

from services.gateway.errors import ScheduleNotFound
from services.gateway.keys import GUARD, SETTINGS, STORE, tenant_of
from services.gateway.newjobs import seal_secrets
from services.gateway.problems import FieldError, Problem, invalid
from services.gateway.routes import json_response
from services.gateway.schemas import ScrapeJobRequest
from services.gateway.validation import decode_request, validate_scrape
from shared.clock import iso
from shared.dbapi import Connection
from shared.schedules import (
    CRON_PATTERN,
    MIN_EVERY_S_DEV,
    MIN_EVERY_S_PRODUCTION,
    cron_problem,
)
from shared.store import epoch_s

_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(dict[str, Any]).decode
RUNS_SHOWN = 100  # the newest runs `GET /v1/schedules/{id}` lists


class ScheduleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    every_s: Annotated[int, msgspec.Meta(ge=1, le=366 * 86_400)] | None = None
    cron: Annotated[str, msgspec.Meta(max_length=100, pattern=CRON_PATTERN)] | None = None
    only_new: bool = False
    job: ScrapeJobRequest


class ScheduleCreated(msgspec.Struct, frozen=True, kw_only=True):
    schedule_id: str
    next_run_at: str


class ScheduleRun(msgspec.Struct, frozen=True, kw_only=True):
    """One slot of the schedule: the job it started, or none and why (`note`)."""

    job_id: str | None
    started_at: str
    state: str  # the job's state, or `skipped`
    note: str | None = None


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    schedule_id: str
    every_s: int | None
    cron: str | None
    only_new: bool
    # The scrape job's body as saved, webhook secrets left out (null).
    job: dict[str, Any]
    created_at: str
    next_run_at: str
    last_run: ScheduleRun | None = None


class ScheduleDetail(Schedule, frozen=True, kw_only=True):
    runs: list[ScheduleRun]  # newest first


class ScheduleList(msgspec.Struct, frozen=True, kw_only=True):
    schedules: list[Schedule]  # newest first


def new_schedule_id() -> str:
    return f"sch_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


async def create_schedule(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = decode_request(await request.read(), ScheduleRequest)
    check_timing(body, production=settings.common.is_production)
    try:
        await validate_scrape(
            body.job, settings.sources, settings.max_leads_per_job, request.app[GUARD]
        )
    except Problem as problem:  # the same checks as a scrape job's, named inside `job`
        errors = [FieldError(f"job.{e.field}", e.message) for e in problem.errors or []]
        raise invalid(errors, problem.status) from None
    destinations, sealed = seal_secrets(body.job.destinations, settings.secret_box)
    stored_job = msgspec.structs.replace(body.job, destinations=destinations)
    tenant = tenant_of(request)
    schedule_id = new_schedule_id()
    now = epoch_s()
    await request.app[STORE].transaction(
        lambda conn: conn.execute(
            "INSERT INTO schedules (schedule_id, tenant, every_s, cron, only_new, job,"
            " sealed_secrets, created_at, next_run_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                schedule_id,
                tenant,
                body.every_s,
                body.cron,
                int(body.only_new),
                _encode(stored_job),
                _encode(sealed),
                now,
                now,  # the first run starts at creation
            ),
        )
    )
    created = ScheduleCreated(schedule_id=schedule_id, next_run_at=iso(now) or "")
    return json_response(created, status=201)


def check_timing(body: ScheduleRequest, *, production: bool) -> None:
    """Exactly one of `every_s` and `cron`, each within its rules."""
    if (body.every_s is None) == (body.cron is None):
        message = "give exactly one of every_s (seconds between runs) and cron"
        raise invalid([FieldError("every_s", message)])
    minimum = MIN_EVERY_S_PRODUCTION if production else MIN_EVERY_S_DEV
    if body.every_s is not None and body.every_s < minimum:
        where = "in production" if production else "here"
        message = f"must be at least {minimum} seconds {where}"
        raise invalid([FieldError("every_s", message)])
    if body.cron is not None and (why := cron_problem(body.cron)) is not None:
        raise invalid([FieldError("cron", why)])


async def list_schedules(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    found = await request.app[STORE].run(lambda conn: tenant_schedules(conn, tenant))
    return json_response(ScheduleList(schedules=found))


async def get_schedule(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    schedule_id = request.match_info["schedule_id"]
    found = await request.app[STORE].run(lambda conn: schedule_detail(conn, tenant, schedule_id))
    if found is None:
        raise ScheduleNotFound(schedule_id)
    return json_response(found)


async def delete_schedule(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    schedule_id = request.match_info["schedule_id"]
    if not await request.app[STORE].transaction(
        lambda conn: remove_schedule(conn, tenant, schedule_id)
    ):
        raise ScheduleNotFound(schedule_id)
    return web.Response(status=204)


def remove_schedule(conn: Connection, tenant: str, schedule_id: str) -> bool:
    """Stop the schedule: no run starts after this commits. Its runs' jobs stay (they are
    the tenant's jobs), and so does the history of runs, unreachable once it is gone."""
    deleted = conn.execute(
        "DELETE FROM schedules WHERE schedule_id = ? AND tenant = ?", (schedule_id, tenant)
    ).rowcount
    if deleted:
        conn.execute("DELETE FROM schedule_leads WHERE schedule_id = ?", (schedule_id,))
    return bool(deleted)


SCHEDULE_COLUMNS = "schedule_id, every_s, cron, only_new, job, created_at, next_run_at"


def tenant_schedules(conn: Connection, tenant: str) -> list[Schedule]:
    rows = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE tenant = ?"
        " ORDER BY created_at DESC, schedule_id DESC",
        (tenant,),
    ).fetchall()
    return [schedule_of(row, runs(conn, row["schedule_id"], 1)) for row in rows]


def schedule_detail(conn: Connection, tenant: str, schedule_id: str) -> ScheduleDetail | None:
    row = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE schedule_id = ? AND tenant = ?",
        (schedule_id, tenant),
    ).fetchone()
    if row is None:
        return None
    recent = runs(conn, schedule_id, RUNS_SHOWN)
    summary = schedule_of(row, recent)
    return ScheduleDetail(**msgspec.structs.asdict(summary), runs=recent)


def schedule_of(row: sqlite3.Row, recent: list[ScheduleRun]) -> Schedule:
    return Schedule(
        schedule_id=row["schedule_id"],
        every_s=row["every_s"],
        cron=row["cron"],
        only_new=bool(row["only_new"]),
        job=_decode_job(row["job"]),
        created_at=iso(row["created_at"]) or "",
        next_run_at=iso(row["next_run_at"]) or "",
        last_run=recent[0] if recent else None,
    )


def runs(conn: Connection, schedule_id: str, limit: int) -> list[ScheduleRun]:
    rows = conn.execute(
        "SELECT r.job_id, r.started_at, r.note, j.state FROM schedule_runs r"
        " LEFT JOIN jobs j ON j.job_id = r.job_id WHERE r.schedule_id = ?"
        " ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?",
        (schedule_id, limit),
    ).fetchall()
    return [
        ScheduleRun(
            job_id=row["job_id"],
            started_at=iso(row["started_at"]) or "",
            # A run's job the tenant has since deleted is shown as such.
            state=row["state"] or ("skipped" if row["job_id"] is None else "deleted"),
            note=row["note"],
        )
        for row in rows
    ]
