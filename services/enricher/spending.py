"""Paying for provider calls: each vendor's billing rule, and the hook the waterfall calls
around every paid call (reserve the most it could cost, call, settle what it cost).

The ledger itself, and why the enricher writes it straight into the shared store, is
shared/credits.py. Billing rules, from each adapter's cited docs (and what the sandbox's
emulations count, services/sandbox/vendors.py):

| kind | kind of credit | charged for |
|---|---|---|
| hunter | `search` | each email found; a repeat of the same request with the same key is free |
| hunter | `verification` | each verification whose status is not `unknown` (same repeat rule) |
| pdl | `match` | each person matched (a per-person 200, also in bulk) |
| apollo | `match` | each person enriched (a non-null match) |
| dropcontact | `email` | each record returned with a verified (nominative) email |
| http | `match` | each person matched (leadflow's own protocol; the sandbox's alpha/beta) |

No rule charges more than one credit per lead and call, so a call for n leads reserves n;
when the budgets leave room for fewer, the first leads are asked and the rest wait for the
job's resume.

A call is recorded with the key it went with, from the provider's key pool
(shared/ratelimit.py `keys_used`), once it is known; the verifier's calls are paid calls
like the others (`verify`). A call lost in a crash is settled when its task is redelivered
and asks the same again, or released after a while (shared/credits.py): a synchronous
vendor charged the lost call as it charges the new one, an asynchronous batch
(`ASYNC_BATCHES`) whose request id was stored is polled, not submitted again, so the lost
call cost nothing more; one whose submission was in flight at the crash is submitted again
(the vendor has no way to find it without its id), and the lost call was paid for; one
whose enricher died before submitting cost nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import msgspec

from services.enricher.batches import submission_was_in_flight, watch_submissions
from services.enricher.providers.base import (
    ProviderUnavailable,
    Reply,
    Verification,
    Verifier,
    VerifyReply,
)
from shared import credits
from shared.clock import epoch_s
from shared.credits import Reservation, Settlement
from shared.errors import StoreUnavailable
from shared.logging import get_logger
from shared.messages import EnrichTask
from shared.ratelimit import keys_given, keys_used
from shared.store import Store
from shared.supervise import compute_backoff

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode
# Kinds whose vendor charges a request once per key (Hunter: "a repeat is free").
FREE_REPEATS = frozenset({"hunter"})
# Kinds whose calls are batches submitted once and polled (services/enricher/batches.py).
ASYNC_BATCHES = frozenset({"dropcontact"})
# How often an enricher releases the holds of calls lost in crashes (shared/credits.py).
RELEASE_LOST_EVERY_S = 60.0


class BudgetPaused(Exception):
    """The job may not spend what the next call could cost: it is paused."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id} paused: {reason}")
        self.reason = reason


def key_id(key: str) -> str:
    """Names an account's key in the ledger without the secret."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def charge(kind: str, reply: Reply) -> dict[str, int]:
    """The credits a lookup's answer about one lead costs, by credit kind."""
    if isinstance(reply, Exception) or not reply:
        return {}
    if kind == "hunter":
        return {"search": 1} if reply.get("email") else {}
    if kind == "dropcontact":
        raw = reply.get("email_status_raw") or ""
        return {"email": 1} if raw.startswith("nominative") else {}
    return {"match": 1}


def verification_charge(reply: VerifyReply) -> dict[str, int]:
    """A verification's price (Hunter's rule: none when the status is unknown)."""
    if isinstance(reply, Verification) and reply.status != "unknown":
        return {"verification": 1}
    return {}


def verify_settlement(
    kind: str, emails: Sequence[str], replies: Sequence[VerifyReply]
) -> Settlement:
    """What verifying these emails cost (a repeat free where the vendor says so)."""
    total: dict[str, int] = {}
    once: list[tuple[str, str]] = []
    for email, reply in zip(emails, replies, strict=True):
        for credit, n in verification_charge(reply).items():
            total[credit] = total.get(credit, 0) + n
            if kind in FREE_REPEATS:
                once.append((credit, email.lower()))
    return Settlement(credits=total, found=0, emails=0, once=tuple(once))


def settlement(kind: str, requests: Sequence[str], replies: Sequence[Reply]) -> Settlement:
    """What a lookup of these leads (their request fingerprints) cost."""
    total: dict[str, int] = {}
    once: list[tuple[str, str]] = []
    found = emails = 0
    for request, reply in zip(requests, replies, strict=True):
        if isinstance(reply, Exception):
            continue
        found += bool(reply)
        emails += bool(reply.get("email"))
        for credit, n in charge(kind, reply).items():
            total[credit] = total.get(credit, 0) + n
            if kind in FREE_REPEATS:
                once.append((credit, request))
    return Settlement(credits=total, found=found, emails=emails, once=tuple(once))


class Spending:
    """Reserve before a paid call, settle after (the waterfall's hook)."""

    def __init__(
        self,
        store: Store,
        daily_budget: int,
        kinds: Mapping[str, str],
        keys: Mapping[str, str],
    ) -> None:
        self.store = store
        self.daily_budget = daily_budget
        self.kinds = dict(kinds)
        self.key_ids = {name: key_id(key) for name, key in keys.items()}
        self._released_at = time.monotonic()

    async def reserve(
        self, provider: str, job_id: str, tenant: str, leads: int, requests: Sequence[str] = ()
    ) -> tuple[Reservation, str | None]:
        """The call, for the first `call.leads` of `leads` leads (as many as the budgets
        leave room for), and why the job is paused when that is not all of them. Raises
        `BudgetPaused` when there is room for none. `requests`, the leads' fingerprints,
        name what the call asks (a lost call of the same is settled by this one)."""
        await self._release_lost()
        call = Reservation(
            call_id=credits.new_call_id(job_id, provider, requests),
            job_id=job_id,
            tenant=tenant,
            provider=provider,
            # Until the call says which key of the pool it went with (`settle`).
            key_id=self.key_ids.get(provider, ""),
            day=credits.utc_day(),
            leads=leads,
            requests=tuple(requests),
        )
        grant = await self.store.transaction(
            partial(credits.reserve, call=call, daily_budget=self.daily_budget)
        )
        if grant.paused is not None:
            log.warning(
                "job.budget_paused",
                job_id=job_id,
                provider=provider,
                reason=grant.paused,
                granted=grant.leads,
                wanted=leads,
            )
        if grant.leads == 0:
            raise BudgetPaused(job_id, grant.paused or "budget")
        keys_used()  # the call about to be made in this context records its keys
        watch_submissions()  # and whether its batch was in flight when a crash came
        return (
            dataclasses.replace(call, call_id=grant.call_id, leads=grant.leads),
            grant.paused,
        )

    async def _release_lost(self) -> None:
        # Now and then, not per call: it reads the unsettled calls of the whole ledger.
        now = time.monotonic()
        if now - self._released_at < RELEASE_LOST_EVERY_S:
            return
        self._released_at = now
        older_than = epoch_s() - credits.LOST_AFTER_S
        try:
            released = await self.store.transaction(
                partial(credits.release_lost, older_than=older_than)
            )
        except StoreUnavailable:
            return  # the next reservation's turn
        if released:
            log.warning("ledger.lost_calls_released", calls=released)

    async def settle(
        self, call: Reservation, requests: Sequence[str], replies: Sequence[Reply]
    ) -> None:
        """Record the answer's price. The call is paid: a store outage is waited out here,
        not turned into a retry that would ask (and pay) again."""
        kind = self.kinds.get(call.provider, "http")
        await self._settle(call, priced(replies, lambda: settlement(kind, requests, replies)), kind)

    async def verify(
        self,
        verifier: Verifier,
        emails: Sequence[str],
        job_id: str,
        tenant: str,
        requests: Sequence[str],
    ) -> tuple[list[VerifyReply | None], str | None]:
        """Verify these emails as paid calls: one reservation for them all, the verdicts,
        settled. None for an email the budgets left no room for, with why the job is paused
        (raises `BudgetPaused` when there is room for none)."""
        call, paused_by = await self.reserve(verifier.name, job_id, tenant, len(emails), requests)
        granted = list(emails[: call.leads])
        replies: list[VerifyReply] = list(
            await asyncio.gather(*(verifier.verify(email, job_id) for email in granted))
        )
        kind = self.kinds.get(verifier.name, "http")
        outcome = priced(replies, lambda: verify_settlement(kind, granted, replies))
        await self._settle(call, outcome, kind)
        return [*replies, *([None] * (len(emails) - len(granted)))], paused_by

    async def _settle(self, call: Reservation, outcome: Settlement, kind: str) -> None:
        # The key the call went with (several, for one call in many requests: each).
        used = ",".join(sorted({key_id(k) for k in keys_given()})) or None
        # A lost call of an asynchronous batch was paid for only if its submission was in
        # flight when the enricher died (services/enricher/batches.py): not when the batch
        # was polled after, nor when the enricher died before submitting.
        lost_charged = kind not in ASYNC_BATCHES or submission_was_in_flight()
        outcome = dataclasses.replace(outcome, key_id=used, lost_charged=lost_charged)
        tries = 0
        while True:
            try:
                await self.store.transaction(
                    partial(credits.settle, call_id=call.call_id, settlement=outcome)
                )
                return
            except StoreUnavailable as e:
                tries += 1
                log.warning("ledger.settle_waiting", job_id=call.job_id, error=str(e))
                await asyncio.sleep(compute_backoff(tries, 0.2, 5.0))

    async def park(self, task: EnrichTask) -> bool:
        """A paused job's task waits in the store until the job is resumed; False if the
        job is not paused any more (the caller sends the task back through the broker)."""
        task_id = uuid.uuid4().hex
        parked = await self.store.transaction(
            partial(credits.park_task, task_id=task_id, job_id=task.job_id, task=_encode(task))
        )
        log.info("job.task_parked", job_id=task.job_id, leads=len(task.leads), parked=parked)
        return bool(parked)


def priced(replies: Sequence[object], price: Callable[[], Settlement]) -> Settlement:
    """What a call cost: nothing when no reply came back (every request unavailable), else
    the vendor's rule applied to the replies."""
    if all(isinstance(r, ProviderUnavailable) for r in replies):
        return Settlement(credits={}, found=0, emails=0)
    return price()
