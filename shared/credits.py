"""The credit ledger: every paid provider call, reserved before it is made and settled
with what the vendor charged once its answer is in; job and tenant budgets; the tasks of
paused jobs.

Who writes it: the enricher, directly into the shared store, not through events to the
router. A budget only holds if the check and the hold are one atomic step taken before
the call, by whichever enricher is about to call; an event to the router would arrive
after the money is spent, and two enrichers would both see room for one more call. So each
call is two short transactions of the enricher's: `reserve` (the most the call could cost
is added to the job's and the tenant's commitments with conditional writes, which either
fit under the cap or change nothing, and the call's row is written) and `settle` (the
call's row gets its credits, and the commitments drop by what was held but not spent).
A job's counters are a row of `job_credits`, not of `jobs`: the router holds the job's row
locked while it records a batch of outcomes, and every paid call would wait for it.
The router stays the single writer of progress and state moves but one: the enricher whose
reservation is refused moves the job to `paused` (shared/jobstate.py, a conditional move
like every other). On SQLite, enrichers and router share the file on one machine and
each transaction is `BEGIN IMMEDIATE`; on PostgreSQL a conditional UPDATE locks the row it
changes, so two enrichers racing for the last credits are serialised on the row and the
second one's condition no longer holds. Only portable SQL (ON CONFLICT upserts, values
passed as parameters).

Exactly once: a call's row is keyed by an id drawn before the call; settling an already
settled row changes nothing. A lead is not asked of the same provider twice in one job
(its answer travels with the task and sits in the provider cache), so redeliveries and
replays make no new rows. A vendor that does not charge a repeat of the same request with
the same key (Hunter) is modelled by `credit_repeats`: the first settle of that request
charges, later ones do not, whichever job or tenant asks.

Calls left in flight by a crash (decided here): a call in flight when its enricher dies
(kill -9, power loss) never settles by itself, and its hold must not count against the
job's and tenant's budgets forever. Two ways out, whichever comes first:

- Settled on redelivery. A call's id starts with a digest of what it asks (`call_digest`:
  job, provider, the leads' request fingerprints), so the redelivered task, asking the same
  provider the same leads, makes a call of the same digest. When that call settles, every
  older call of its digest still unsettled is a lost one (the broker redelivers a task only
  once its consumer is gone) and is settled first, in the same transaction, with what the
  vendor charged for it: the same as the new call for a synchronous vendor (the same request
  gets the same answer and the same price; for a vendor that does not charge repeats, the
  lost call is the one charged), nothing for an asynchronous batch that was polled, not
  submitted again (`Settlement.lost_charged` False). That is what makes the ledger equal
  the vendor's count across crashes. A synchronous lost call is assumed to have reached
  the vendor: a kill between the reservation and the request leaving counts a call the
  vendor never saw, the safe side for a budget (knowing would take a write per call as it
  leaves). An asynchronous batch has that write (its row just before it is submitted,
  services/enricher/batches.py), so its lost call is priced exactly.
- Released after `LOST_AFTER_S`. A lost call that nobody asks again (the job was stopped,
  or the lead was completed another way) has its hold dropped (`release_lost`, run by each
  enricher now and then): `reserved` becomes 0, `credits` stays NULL (what it cost is not
  known), and a late settle, from a call that was only slow, still counts what it cost.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from shared import jobstate
from shared.clock import epoch_s
from shared.dbapi import Connection

BUDGET = "budget"
TENANT_BUDGET = "tenant_budget"
PAUSE_REASONS = frozenset({BUDGET, TENANT_BUDGET})
# Longer than any call can take (Dropcontact's polls: 10 x 30 s, plus timeouts), so only
# a call whose enricher is gone has its hold released.
LOST_AFTER_S = 1800.0
# The jobs that may spend: working ones, and completed ones, whose dead letters a user may
# replay (a stopped job's tasks are dropped before they get here).
SPENDING: tuple[str, ...] = (*jobstate.WORKING, jobstate.COMPLETED)


def utc_day() -> str:
    return datetime.now(UTC).date().isoformat()


@dataclass(frozen=True)
class Reservation:
    """A paid call about to be made for `leads` leads (each may cost one credit)."""

    call_id: str
    job_id: str
    tenant: str
    provider: str
    key_id: str
    day: str
    leads: int
    # The leads' request fingerprints, in order (the call asks for the first `leads`); with
    # them the call's id names what it asks, and a lost call of the same is found.
    requests: tuple[str, ...] = ()


def call_digest(job_id: str, provider: str, requests: Sequence[str]) -> str:
    """What a call asks, as the prefix of its id (32 hex digits)."""
    canonical = "\n".join((job_id, provider, *sorted(requests)))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def new_call_id(job_id: str, provider: str, requests: Sequence[str]) -> str:
    """`<digest>.<random>`, or only random when the requests are not known."""
    nonce = uuid.uuid4().hex
    if not requests:
        return nonce
    return f"{call_digest(job_id, provider, requests)}.{nonce[:16]}"


@dataclass(frozen=True)
class Settlement:
    """What a call cost, by credit kind, and what it found (for hit rates)."""

    credits: Mapping[str, int]
    found: int
    emails: int
    # Charges a vendor makes once per (key, request): (kind, request fingerprint).
    once: tuple[tuple[str, str], ...] = ()
    # The key the call went with (the ledger's name for it), when known only after it.
    key_id: str | None = None
    # Whether a lost earlier call of the same requests cost what this one did (a
    # synchronous vendor answered it too), or nothing (a batch polled, not resubmitted).
    lost_charged: bool = True


@dataclass(frozen=True)
class Grant:
    """What a reservation got: credits for the first `leads` leads of the call (each lead
    costs at most one), and why the job is paused when that is not all of them."""

    leads: int
    paused: str | None = None
    # Which row records the call (for the leads granted): not part of what was granted.
    call_id: str = field(default="", compare=False)


def reserve(conn: Connection, call: Reservation, daily_budget: int) -> Grant:
    """Hold credits for as many of the call's leads as the job's cap and the tenant's daily
    budget leave room for (each lead may cost one), and record the call for those. When
    that is not all of them, the job is paused ("budget" / "tenant_budget"): the rest wait
    for the resume. A job that is not working (paused already, or stopped) gets nothing
    and answers its paused reason or its state.

    The room is read first, then taken with conditional UPDATEs that only hold if it is
    still there: on SQLite the transaction holds the write lock throughout; on PostgreSQL a
    concurrent reservation that took the room first makes the UPDATE change nothing, and
    this one is refused instead of overspending."""
    job = conn.execute(
        "SELECT j.max_credits, COALESCE(c.committed, 0) FROM jobs j"
        " LEFT JOIN job_credits c ON c.job_id = j.job_id"
        f" WHERE j.job_id = ? AND {jobstate.state_in(SPENDING, 'j.state')}",
        (call.job_id,),
    ).fetchone()
    if job is None:
        return Grant(0, _refused(conn, call.job_id, BUDGET))
    conn.execute(
        "INSERT INTO tenant_credits (tenant, day, committed) VALUES (?, ?, 0)"
        " ON CONFLICT (tenant, day) DO NOTHING",
        (call.tenant, call.day),
    )
    job_room = call.leads if job[0] is None else job[0] - job[1]
    tenant_room = call.leads
    if daily_budget > 0:
        committed = conn.execute(
            "SELECT committed FROM tenant_credits WHERE tenant = ? AND day = ?",
            (call.tenant, call.day),
        ).fetchone()[0]
        tenant_room = daily_budget - committed
    binding = BUDGET if job_room <= tenant_room else TENANT_BUDGET
    granted = min(call.leads, job_room, tenant_room)
    if granted <= 0:
        return Grant(0, _refused(conn, call.job_id, binding))
    # The job's row is only read: the router holds it locked while it records a batch.
    cap = "" if job[0] is None else " WHERE job_credits.committed + excluded.committed <= ?"
    if not conn.execute(
        "INSERT INTO job_credits (job_id, credits, committed) VALUES (?, 0, ?)"
        " ON CONFLICT (job_id) DO UPDATE SET committed = job_credits.committed"
        f" + excluded.committed{cap}",
        (call.job_id, granted, *(() if job[0] is None else (job[0],))),
    ).rowcount:
        return Grant(0, _refused(conn, call.job_id, BUDGET))
    within = "" if daily_budget <= 0 else " AND committed + ? <= ?"
    extra: tuple[int, ...] = () if daily_budget <= 0 else (granted, daily_budget)
    if not conn.execute(
        f"UPDATE tenant_credits SET committed = committed + ? WHERE tenant = ? AND day = ?{within}",
        (granted, call.tenant, call.day, *extra),
    ).rowcount:
        conn.execute(
            "UPDATE job_credits SET committed = committed - ? WHERE job_id = ?",
            (granted, call.job_id),
        )
        return Grant(0, _refused(conn, call.job_id, TENANT_BUDGET))
    call_id = granted_id(call, granted)
    conn.execute(
        "INSERT INTO credit_calls (call_id, job_id, tenant, provider, key_id, day, leads,"
        " reserved, reserved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            call_id,
            call.job_id,
            call.tenant,
            call.provider,
            call.key_id,
            call.day,
            granted,
            granted,
            epoch_s(),
        ),
    )
    if granted < call.leads:
        return Grant(granted, _refused(conn, call.job_id, binding), call_id)
    return Grant(granted, call_id=call_id)


def granted_id(call: Reservation, granted: int) -> str:
    """The call's id for the leads granted (its digest names those, not all asked)."""
    if not call.requests or granted == len(call.requests):
        return call.call_id
    return new_call_id(call.job_id, call.provider, call.requests[:granted])


def _refused(conn: Connection, job_id: str, reason: str) -> str:
    if jobstate.pause(conn, job_id, reason):
        return reason
    row = conn.execute(
        "SELECT state, paused_reason FROM jobs WHERE job_id = ?", (job_id,)
    ).fetchone()
    if row is None:
        return "the job is deleted"
    if row[1]:
        return str(row[1])  # paused already, by another call
    if row[0] == jobstate.COMPLETED:  # a replay of its dead letters, over its cap
        return "the job's credit budget is spent"
    return f"the job is {row[0]}"


def settle(conn: Connection, call_id: str, settlement: Settlement) -> int:
    """Record what a reserved call cost; the credits charged (0 if settled already). Lost
    calls of the same requests (see the module's docstring) are settled first."""
    digest, dot, _ = call_id.partition(".")
    if dot:
        # The ids starting with the digest, as a range the primary key's index serves
        # (hex bounds: a database collation may ignore the dot).
        above = successor(digest)
        lost = conn.execute(
            "SELECT call_id FROM credit_calls WHERE call_id > ?"
            + ("" if above is None else " AND call_id < ?")
            + " AND call_id <> ? AND credits IS NULL",
            (digest, *(() if above is None else (above,)), call_id),
        ).fetchall()
        nothing = Settlement(credits={}, found=0, emails=0)
        for row in lost:
            _settle(conn, row[0], settlement if settlement.lost_charged else nothing, None)
    return _settle(conn, call_id, settlement, settlement.key_id)


def successor(digest: str) -> str | None:
    """The first hex string of the digest's length above every string it begins."""
    n = int(digest, 16) + 1
    return None if n >> (4 * len(digest)) else f"{n:0{len(digest)}x}"


def _settle(conn: Connection, call_id: str, settlement: Settlement, key: str | None) -> int:
    row = conn.execute(
        "SELECT job_id, tenant, provider, key_id, day, reserved, credits FROM credit_calls"
        " WHERE call_id = ?",
        (call_id,),
    ).fetchone()
    if row is None or row["credits"] is not None:
        return 0
    credits = dict(settlement.credits)
    now = epoch_s()
    key_used = key or row["key_id"]
    for kind, request in settlement.once:
        if not conn.execute(
            "INSERT INTO credit_repeats (provider, key_id, kind, request, charged_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, key_id, kind, request) DO NOTHING",
            (row["provider"], key_used, kind, request, now),
        ).rowcount:
            credits[kind] = credits.get(kind, 0) - 1  # a repeat the vendor does not charge
    total = sum(n for n in credits.values() if n > 0)
    conn.execute(
        "UPDATE credit_calls SET credits = ?, found = ?, emails = ?, settled_at = ?, key_id = ?"
        " WHERE call_id = ?",
        (total, settlement.found, settlement.emails, now, key_used, call_id),
    )
    conn.executemany(
        "INSERT INTO credit_kinds (call_id, kind, credits) VALUES (?, ?, ?)"
        " ON CONFLICT (call_id, kind) DO NOTHING",
        [(call_id, kind, n) for kind, n in sorted(credits.items()) if n > 0],
    )
    released = total - row["reserved"]
    conn.execute(
        "UPDATE job_credits SET credits = credits + ?, committed = committed + ? WHERE job_id = ?",
        (total, released, row["job_id"]),
    )
    conn.execute(
        "UPDATE tenant_credits SET committed = committed + ? WHERE tenant = ? AND day = ?",
        (released, row["tenant"], row["day"]),
    )
    return total


def release_lost(conn: Connection, older_than: float) -> int:
    """Drop the holds of calls reserved before `older_than` (epoch s) and never settled:
    their enricher is gone and nobody asked the same again. The rows stay unsettled (a late
    settle still counts); the number of calls released."""
    rows = conn.execute(
        "SELECT call_id, job_id, tenant, day, reserved FROM credit_calls"
        " WHERE credits IS NULL AND reserved > 0 AND reserved_at < ?",
        (older_than,),
    ).fetchall()
    for row in rows:
        if not conn.execute(
            "UPDATE credit_calls SET reserved = 0 WHERE call_id = ? AND credits IS NULL",
            (row["call_id"],),
        ).rowcount:
            continue
        conn.execute(
            "UPDATE job_credits SET committed = committed - ? WHERE job_id = ?",
            (row["reserved"], row["job_id"]),
        )
        conn.execute(
            "UPDATE tenant_credits SET committed = committed - ? WHERE tenant = ? AND day = ?",
            (row["reserved"], row["tenant"], row["day"]),
        )
    return len(rows)


# -- tasks of paused jobs --------------------------------------------------------------


def park_task(conn: Connection, task_id: str, job_id: str, task: bytes) -> bool:
    """Keep a paused job's task in the store (the broker holds nothing while paused);
    False, keeping nothing, if the job is not paused any more (resumed meanwhile: the
    resume has taken the parked tasks already, so this one goes back to the broker).

    The check is an UPDATE, not a SELECT: on PostgreSQL it waits for a resume in progress
    to commit and then sees its state, so no task is parked after a resume read them."""
    if not conn.execute(
        "UPDATE jobs SET paused_at = paused_at"
        f" WHERE job_id = ? AND {jobstate.state_in([jobstate.PAUSED])}",
        (job_id,),
    ).rowcount:
        return False
    conn.execute(
        "INSERT INTO paused_tasks (task_id, job_id, task, parked_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (task_id) DO NOTHING",
        (task_id, job_id, task, epoch_s()),
    )
    return True


def parked_tasks(conn: Connection, job_id: str) -> list[tuple[str, bytes]]:
    rows = conn.execute(
        "SELECT task_id, task FROM paused_tasks WHERE job_id = ? ORDER BY parked_at, task_id",
        (job_id,),
    ).fetchall()
    return [(row[0], bytes(row[1])) for row in rows]


def drop_parked(conn: Connection, task_ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM paused_tasks WHERE task_id = ?", [(t,) for t in task_ids])


# -- reads -----------------------------------------------------------------------------


def credits_by_day(
    conn: Connection, tenant: str, first: date, last: date
) -> list[tuple[str, str, str, int]]:
    """(day, provider, kind, credits) of the tenant's settled calls in the period."""
    rows = conn.execute(
        "SELECT c.day, c.provider, k.kind, SUM(k.credits) FROM credit_calls c"
        " JOIN credit_kinds k ON k.call_id = c.call_id"
        " WHERE c.tenant = ? AND c.day BETWEEN ? AND ?"
        " GROUP BY c.day, c.provider, k.kind",
        (tenant, first.isoformat(), last.isoformat()),
    ).fetchall()
    return [(row[0], row[1], row[2], int(row[3])) for row in rows]


@dataclass(frozen=True)
class ProviderRecord:
    """A provider's record over settled calls: leads asked, found, emails, credits."""

    leads: int
    found: int
    emails: int
    credits: int

    @property
    def hit_rate(self) -> float | None:
        return None if not self.leads else self.found / self.leads

    @property
    def credits_per_lead(self) -> float | None:
        return None if not self.leads else self.credits / self.leads


def provider_records(
    conn: Connection,
    tenant: str | None,
    first: date | None = None,
    last: date | None = None,
) -> dict[str, ProviderRecord]:
    """Each provider's record, for one tenant (or every tenant) over a period (or ever)."""
    where = ["credits IS NOT NULL"]
    values: list[str] = []
    if tenant is not None:
        where.append("tenant = ?")
        values.append(tenant)
    if first is not None and last is not None:
        where.append("day BETWEEN ? AND ?")
        values += [first.isoformat(), last.isoformat()]
    rows = conn.execute(
        "SELECT provider, SUM(leads), SUM(found), SUM(emails), SUM(credits) FROM credit_calls"
        f" WHERE {' AND '.join(where)} GROUP BY provider",
        values,
    ).fetchall()
    return {
        row[0]: ProviderRecord(
            int(row[1] or 0), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0)
        )
        for row in rows
    }
