"""The webhook destination: signed batches, delivered by a pool, fair between tenants.

Batches are cut by the ledger (fixed lead ranges, a stable `webhook-id` each). This
dispatcher keeps up to `concurrency` deliveries in flight as independent tasks: a slot
frees the moment its delivery ends, so a receiver that hangs holds only its own slots,
never a round of everyone else's. Each claim (one store transaction) leases due batches
(so a standby router or a restart never sends one batch twice at once):

- round-robin by tenant, starting after the tenant served last;
- at most `receiver_concurrency` in flight per receiver and `tenant_concurrency` per
  tenant, counted from the leases in the store (so across routers too). The receiver is
  the URL's origin (scheme, host, port), not the job's destination: what hangs is a
  server, and every job of every tenant pointing at it shares its fate;
- a receiver whose last `circuit_failures` deliveries all failed has an open circuit:
  its batches are pushed past the cool-off instead of being tried (or given up, past
  the retry window); after the cool-off one delivery tests it (half-open);
- a destination whose receiver answered `410 Gone` is disabled: its pending batches
  fail at once with the reason, later ones without a request; the job is not failed.

Secrets are stored sealed (shared/secretbox.py) on the destination's row and opened here
only to sign; during a rotation's overlap both signatures are sent, space-separated, as
Standard Webhooks allows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import math
import time
from collections import Counter as Tally
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import msgspec
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from services.router.config import WebhookSettings
from shared import tracing
from shared.dbapi import Connection
from shared.health import Metrics
from shared.jobs import JobSpec, WebhookDestination
from shared.logging import get_logger
from shared.netguard import NetGuard, TargetRefused
from shared.results import decode_result, field_map, project
from shared.secretbox import SecretBox, SecretUnreadable
from shared.store import Store, db_now, decode_spec, epoch_s
from shared.supervise import Backoff

log = get_logger(__name__)
# A claimed batch is someone else's for the call's timeout plus this margin.
LEASE_MARGIN_S = 30.0
IDLE_POLL_S = 1.0
# Claim failures (store trouble) back off up to this attempt's delay, then keep trying.
CLAIM_BACKOFF_CAP = 8
GONE_REASON = "receiver answered 410 Gone: destination disabled"
_encode = msgspec.json.Encoder().encode
DEFAULT_PORTS = {"http": 80, "https": 443}


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
    tenant: str = ""
    receiver: str = ""


@dataclass(frozen=True)
class Verdict:
    """What one delivery attempt means for its batch."""

    outcome: Literal["delivered", "disabled", "given_up", "retry"]
    retry_in_s: float = 0.0


def verdict(
    status: int | None,
    error: str | None,
    now: float,
    batch: Batch,
    retry_window_s: float,
    backoff: Backoff,
) -> Verdict:
    """The webhook retry policy: a 410 disables the destination; a failure is retried with
    backoff (`compute_backoff`, as tasks are) until the batch is older than the window."""
    if status == 410:
        return Verdict("disabled")
    if error is None:
        return Verdict("delivered")
    if now - batch.created_at >= retry_window_s:
        return Verdict("given_up")
    return Verdict("retry", backoff.delay_s(batch.attempts + 1))


@dataclass(frozen=True)
class Gate:
    """What a receiver's circuit allows right now (a snapshot handed to the claim)."""

    open_until: float = 0.0  # > now: open, do not try before
    trial: bool = False  # half-open: one delivery may test it
    last_error: str | None = None


@dataclass
class Circuit:
    failures: int = 0  # consecutive
    open_until: float = 0.0
    last_error: str | None = None


class Circuits:
    """Per receiver: closed, open after `threshold` failures in a row, half-open after
    the cool-off (one trial delivery: success closes it, failure opens it again).

    Kept per router process: a standby router learns a receiver's trouble on its own.
    While a trial is in flight its lease makes the receiver busy, so no second one starts.
    """

    def __init__(self, threshold: int, cooloff_s: float) -> None:
        self.threshold = threshold
        self.cooloff_s = cooloff_s
        self._circuits: dict[str, Circuit] = {}

    def gates(self, now: float) -> dict[str, Gate]:
        gates: dict[str, Gate] = {}
        for receiver, c in self._circuits.items():
            if c.failures < self.threshold:
                continue
            if now < c.open_until:
                gates[receiver] = Gate(open_until=c.open_until, last_error=c.last_error)
            else:
                gates[receiver] = Gate(trial=True, last_error=c.last_error)
        return gates

    def record(self, receiver: str, error: str | None, now: float) -> None:
        circuit = self._circuits.setdefault(receiver, Circuit())
        was_open = circuit.failures >= self.threshold
        if error is None:
            if was_open:
                log.info("webhook.circuit_closed", receiver=receiver)
            del self._circuits[receiver]
            return
        circuit.failures += 1
        circuit.last_error = error
        if circuit.failures >= self.threshold:
            circuit.open_until = now + self.cooloff_s
            log.warning(
                "webhook.circuit_open",
                receiver=receiver,
                failures=circuit.failures,
                cooloff_s=self.cooloff_s,
                error=error,
            )

    def open_count(self) -> int:
        return sum(1 for c in self._circuits.values() if c.failures >= self.threshold)


@dataclass(frozen=True)
class Limits:
    receiver: int
    tenant: int


UNLIMITED = 1_000_000


@dataclass
class ClaimRules:
    """How a claim chooses (the defaults: no limits, no circuits), and what else it did."""

    limits: Limits = Limits(receiver=UNLIMITED, tenant=UNLIMITED)
    gates: dict[str, Gate] = field(default_factory=dict)
    last_tenant: str = ""
    retry_window_s: float = math.inf
    specs: SpecCache = field(default_factory=lambda: SpecCache())
    # Filled in by the claim.
    deferred: int = 0  # batches pushed past an open circuit
    given_up: int = 0  # past the retry window behind an open circuit
    disabled: int = 0  # of destinations disabled by a 410


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
        self.box: SecretBox = settings.secret_box
        self._wake = asyncio.Event()
        self.backoff = Backoff(base_s=settings.backoff_base_s, max_s=settings.backoff_max_s)
        self.circuits = Circuits(settings.circuit_failures, settings.circuit_cooloff_s)
        self.limits = Limits(settings.receiver_concurrency, settings.tenant_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_tenant = ""
        self._specs = SpecCache()
        self._deliveries = Counter(
            "leadflow_webhook_deliveries_total",
            "Webhook batch delivery attempts by outcome.",
            ["outcome"],
            registry=metrics.registry,
        )
        self._open_circuits = Gauge(
            "leadflow_webhook_circuits_open",
            "Webhook receivers not tried until their cool-off ends.",
            registry=metrics.registry,
        )

    def nudge(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                self._wake.clear()
                free = self.settings.concurrency - len(self._inflight)
                if free <= 0:
                    await self._idle()
                    continue
                try:
                    claimed = await self.claim(free)
                except Exception:
                    # Store trouble: never let it end delivery for good.
                    failures += 1
                    log.exception("webhook.claim_failed", failures=failures)
                    await asyncio.sleep(self.backoff.delay_s(min(failures, CLAIM_BACKOFF_CAP)))
                    continue
                failures = 0
                for batch in claimed:
                    self._start(batch)
                if not claimed:
                    await self._idle()
        finally:
            for task in self._inflight:
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)

    def _start(self, batch: Batch) -> None:
        task = asyncio.create_task(self._deliver_logged(batch), name=f"webhook {batch.webhook_id}")
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def claim(self, free: int) -> list[Batch]:
        """Lease up to `free` due batches, fairly; apply circuits and disabled destinations."""
        now = epoch_s()
        gates = self.circuits.gates(now)
        self._open_circuits.set(self.circuits.open_count())
        rules = ClaimRules(
            limits=self.limits,
            gates=gates,
            last_tenant=self._last_tenant,
            retry_window_s=self.settings.retry_window_s,
            specs=self._specs,
        )
        lease_s = self.settings.timeout_s + LEASE_MARGIN_S
        batches = await self.store.transaction(
            lambda conn: claim_due(conn, now, free, lease_s, rules)
        )
        if batches:
            self._last_tenant = batches[-1].tenant
        if rules.given_up:
            self._deliveries.labels(outcome="given_up").inc(rules.given_up)
        if rules.disabled:
            self._deliveries.labels(outcome="disabled").inc(rules.disabled)
        return batches

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
        payload = await self.store.run(lambda conn: build_payload(conn, batch, epoch_s()))
        if payload is None:
            return  # the job was deleted meanwhile, and its batches with it
        with tracing.span(
            "webhook delivery",
            parent=tracing.stored(payload.traceparent),
            kind=SpanKind.CLIENT,
            job_id=batch.job_id,
            webhook_id=batch.webhook_id,
            leads=batch.size,
            attempt=batch.attempts + 1,
        ) as span:
            status, error = await self._post(payload, batch)
            if error is not None:
                tracing.fail(span, error)
        now = epoch_s()
        after = verdict(status, error, now, batch, self.settings.retry_window_s, self.backoff)
        if after.outcome == "disabled":
            await self.store.transaction(lambda conn: disable_destination(conn, batch))
            self._deliveries.labels(outcome="disabled").inc()
            log.error("webhook.destination_disabled", job_id=batch.job_id, dest=batch.dest_idx)
            return
        self.circuits.record(batch.receiver, error, now)
        if error is None:  # the verdict is "delivered"
            await self.store.transaction(lambda conn: mark_delivered(conn, batch))
            self._deliveries.labels(outcome="delivered").inc()
            log.info(
                "webhook.delivered",
                job_id=batch.job_id,
                webhook_id=batch.webhook_id,
                leads=batch.size,
            )
        elif after.outcome == "given_up":
            await self.store.transaction(lambda conn: mark_given_up(conn, batch, error))
            self._deliveries.labels(outcome="given_up").inc()
            log.error(
                "webhook.given_up", job_id=batch.job_id, webhook_id=batch.webhook_id, error=error
            )
        else:
            delay = after.retry_in_s
            await self.store.transaction(lambda conn: mark_retry(conn, batch, error, now + delay))
            self._deliveries.labels(outcome="retry").inc()
            log.warning(
                "webhook.retry",
                job_id=batch.job_id,
                webhook_id=batch.webhook_id,
                error=error,
                retry_in_s=round(delay, 2),
            )

    async def _post(self, payload: Payload, batch: Batch) -> tuple[int | None, str | None]:
        """POST the batch: (HTTP status or None, None on success else why it failed)."""
        try:
            self.guard.check_literal_host(payload.url)
            secrets = [self.box.open(sealed) for sealed in payload.sealed_secrets]
            # The delivery's span, so the receiver can continue the job's trace.
            headers = {
                **signed_headers(batch.webhook_id, payload.body, *secrets),
                **tracing.carrier(),
            }
            async with self.session.post(
                payload.url,
                data=payload.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return response.status, None
                return response.status, f"HTTP {response.status}"
        except TargetRefused as e:
            return None, f"refused target: {e}"
        except SecretUnreadable as e:
            return None, str(e)
        except TimeoutError:
            return None, f"timed out after {self.settings.timeout_s:g}s"
        except (aiohttp.ClientError, OSError) as e:
            return None, f"{type(e).__name__}: {e}"


def signed_headers(webhook_id: str, body: bytes, *secrets: str | None) -> dict[str, str]:
    """Standard Webhooks: HMAC-SHA256 over `id.timestamp.body`, base64, as `v1,<sig>`;
    one signature per secret, space-separated (a rotation's overlap sends two)."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
    }
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    signatures = [
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
        if s
    ]
    if signatures:
        headers["webhook-signature"] = " ".join(signatures)
    return headers


def secret_key(secret: str) -> bytes:
    """`whsec_<base64>` secrets are base64 keys (as the spec issues them); others are raw."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode()


def receiver_of(url: str) -> str:
    """The origin a URL posts to: what hangs or fails together."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return url
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


class SpecCache:
    """Job specs by job id, for the claim (used on the store thread only). A spec never
    changes once recorded, so entries are only ever dropped to bound the memory."""

    MAX = 10_000

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    def receiver(self, job_id: str, dest_idx: int, raw_spec: bytes) -> str:
        spec = self._specs.get(job_id)
        if spec is None:
            if len(self._specs) >= self.MAX:
                self._specs.clear()
            spec = self._specs[job_id] = decode_spec(raw_spec)
        dest = spec.destinations[dest_idx]
        return receiver_of(dest.url) if isinstance(dest, WebhookDestination) else ""


def claim_due(
    conn: Connection,
    now: float,
    free: int,
    lease_s: float,
    rules: ClaimRules | None = None,
) -> list[Batch]:
    """Lease up to `free` due batches as `rules` choose; fail those of disabled
    destinations, defer (or give up) those behind an open circuit."""
    rules = rules or ClaimRules()
    # What the claim did, from zero: on PostgreSQL a transaction may run more than once.
    rules.deferred = rules.given_up = rules.disabled = 0
    specs = rules.specs
    # Leases are compared in the database's time: routers with skewed clocks agree on
    # when one expired. (The claim itself runs alone: SQLite's write lock, SERIALIZABLE
    # on PostgreSQL, so no batch is leased twice.)
    lease_now = db_now(conn)
    busy_receivers: Tally[str] = Tally()
    busy_tenants: Tally[str] = Tally()
    for row in conn.execute(
        "SELECT b.job_id, b.dest_idx, j.tenant, j.spec FROM webhook_batches b"
        " JOIN jobs j ON j.job_id = b.job_id WHERE b.state = 'pending' AND b.lease_until > ?",
        (lease_now,),
    ):
        busy_receivers[specs.receiver(row[0], row[1], row[3])] += 1
        busy_tenants[row[2]] += 1
    candidates: list[Batch] = []
    disabled: dict[tuple[str, int], str] = {}
    # The first few due batches of each destination: enough to fill its receiver's share,
    # whatever backlog another destination has.
    for row in conn.execute(
        "SELECT * FROM (SELECT b.job_id, b.dest_idx, b.batch_no, b.webhook_id, b.first_seq,"
        " b.last_seq, b.size, b.attempts, b.created_at, j.tenant, j.spec, d.disabled_reason,"
        " ROW_NUMBER() OVER (PARTITION BY b.job_id, b.dest_idx"
        " ORDER BY b.next_attempt_at, b.batch_no) AS rank"
        " FROM webhook_batches b JOIN jobs j ON j.job_id = b.job_id"
        " JOIN destinations d ON d.job_id = b.job_id AND d.idx = b.dest_idx"
        " WHERE b.state = 'pending' AND b.next_attempt_at <= ? AND b.lease_until <= ?) AS due"
        " WHERE rank <= ? ORDER BY created_at, batch_no",
        (now, lease_now, rules.limits.receiver),
    ):
        if row["disabled_reason"] is not None:
            disabled[(row["job_id"], row["dest_idx"])] = row["disabled_reason"]
            continue
        candidates.append(
            Batch(
                job_id=row["job_id"],
                dest_idx=row["dest_idx"],
                batch_no=row["batch_no"],
                webhook_id=row["webhook_id"],
                first_seq=row["first_seq"],
                last_seq=row["last_seq"],
                size=row["size"],
                attempts=row["attempts"],
                created_at=row["created_at"],
                tenant=row["tenant"],
                receiver=specs.receiver(row["job_id"], row["dest_idx"], row["spec"]),
            )
        )
    for (job_id, dest_idx), reason in disabled.items():
        rules.disabled += fail_pending(conn, job_id, dest_idx, reason)
    chosen, blocked = choose(candidates, free, rules, busy_receivers, busy_tenants, now)
    for batch, gate in blocked:
        if now - batch.created_at >= rules.retry_window_s:
            mark_given_up(conn, batch, f"receiver failing, circuit open: {gate.last_error}")
            rules.given_up += 1
        else:
            conn.execute(
                "UPDATE webhook_batches SET next_attempt_at = ? WHERE job_id = ? AND dest_idx = ?"
                " AND batch_no = ?",
                (gate.open_until, batch.job_id, batch.dest_idx, batch.batch_no),
            )
            rules.deferred += 1
    conn.executemany(
        "UPDATE webhook_batches SET lease_until = ? WHERE job_id = ? AND dest_idx = ?"
        " AND batch_no = ?",
        [(lease_now + lease_s, b.job_id, b.dest_idx, b.batch_no) for b in chosen],
    )
    return chosen


def choose(
    candidates: list[Batch],
    free: int,
    rules: ClaimRules,
    busy_receivers: Tally[str],
    busy_tenants: Tally[str],
    now: float,
) -> tuple[list[Batch], list[tuple[Batch, Gate]]]:
    """Pick up to `free` batches, one per tenant per round (tenants in name order, starting
    after the last one served), within the limits; return them and those behind an open
    circuit."""
    limits, gates = rules.limits, rules.gates
    queues: dict[str, deque[Batch]] = defaultdict(deque)
    blocked: list[tuple[Batch, Gate]] = []
    trials: set[str] = set()
    for batch in candidates:
        gate = gates.get(batch.receiver)
        if gate is not None and gate.open_until > now:
            blocked.append((batch, gate))
        else:
            queues[batch.tenant].append(batch)
    names = sorted(queues)
    start = next((i for i, name in enumerate(names) if name > rules.last_tenant), 0)
    order = names[start:] + names[:start]
    chosen: list[Batch] = []
    while len(chosen) < free:
        picked = False
        for tenant in order:
            if len(chosen) >= free:
                break
            if busy_tenants[tenant] >= limits.tenant:
                continue
            found = _next_admissible(queues[tenant], limits, gates, trials, busy_receivers)
            if found is None:
                continue
            chosen.append(found)
            busy_receivers[found.receiver] += 1
            busy_tenants[tenant] += 1
            picked = True
        if not picked:
            break
    return chosen, blocked


def _next_admissible(
    queue: deque[Batch],
    limits: Limits,
    gates: dict[str, Gate],
    trials: set[str],
    busy_receivers: Tally[str],
) -> Batch | None:
    """The tenant's next batch whose receiver has room (a half-open one: one trial)."""
    for _ in range(len(queue)):
        batch = queue.popleft()
        gate = gates.get(batch.receiver)
        if gate is not None and gate.trial:
            if batch.receiver in trials or busy_receivers[batch.receiver] > 0:
                continue
            trials.add(batch.receiver)
            return batch
        if busy_receivers[batch.receiver] < limits.receiver:
            return batch
        # Receiver full: this batch waits for a later claim.
    return None


@dataclass(frozen=True)
class Payload:
    url: str
    body: bytes
    sealed_secrets: list[str]  # the current one first, then one being rotated out
    traceparent: str | None = None  # the job's trace (shared/tracing.py)


def build_payload(conn: Connection, batch: Batch, now: float) -> Payload | None:
    job = conn.execute(
        "SELECT spec, traceparent FROM jobs WHERE job_id = ?", (batch.job_id,)
    ).fetchone()
    dest_row = conn.execute(
        "SELECT secret, previous_secret, previous_secret_until FROM destinations"
        " WHERE job_id = ? AND idx = ?",
        (batch.job_id, batch.dest_idx),
    ).fetchone()
    if job is None or dest_row is None:
        return None
    dest = decode_spec(job["spec"]).destinations[batch.dest_idx]
    assert isinstance(dest, WebhookDestination)
    fields = field_map(dest.fields)
    rows = conn.execute(
        "SELECT data FROM leads WHERE job_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
        (batch.job_id, batch.first_seq, batch.last_seq),
    ).fetchall()
    leads = [project(decode_result(r[0]), fields) for r in rows]
    # A job recorded before secrets were sealed keeps its secret in the spec.
    secrets = [s for s in (dest_row["secret"] or dest.secret,) if s]
    if dest_row["previous_secret"] and (dest_row["previous_secret_until"] or 0) > now:
        secrets.append(dest_row["previous_secret"])
    body = _encode({"job_id": batch.job_id, "leads": leads})
    return Payload(dest.url, body, secrets, job["traceparent"])


def mark_delivered(conn: Connection, batch: Batch) -> None:
    _finish(conn, batch, "delivered", None)


def mark_given_up(conn: Connection, batch: Batch, error: str) -> None:
    _finish(conn, batch, "failed", error)


def _finish(conn: Connection, batch: Batch, state: str, error: str | None) -> None:
    updated = conn.execute(
        "UPDATE webhook_batches SET state = ?, attempts = attempts + 1, last_error = ?,"
        " lease_until = 0 WHERE job_id = ? AND dest_idx = ? AND batch_no = ? AND state = 'pending'",
        (state, error, batch.job_id, batch.dest_idx, batch.batch_no),
    ).rowcount
    if not updated:
        return  # cancelled or failed meanwhile: counted there
    column = "delivered" if state == "delivered" else "failed"
    conn.execute(
        f"UPDATE destinations SET {column} = {column} + ?,"
        " last_error = COALESCE(?, last_error) WHERE job_id = ? AND idx = ?",
        (batch.size, error, batch.job_id, batch.dest_idx),
    )


def mark_retry(conn: Connection, batch: Batch, error: str, next_at: float) -> None:
    updated = conn.execute(
        "UPDATE webhook_batches SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
        " lease_until = 0 WHERE job_id = ? AND dest_idx = ? AND batch_no = ? AND state = 'pending'",
        (error, next_at, batch.job_id, batch.dest_idx, batch.batch_no),
    ).rowcount
    if updated:
        conn.execute(
            "UPDATE destinations SET last_error = ? WHERE job_id = ? AND idx = ?",
            (error, batch.job_id, batch.dest_idx),
        )


def disable_destination(conn: Connection, batch: Batch) -> None:
    """The receiver said the endpoint is gone: no more requests to it for this destination."""
    conn.execute(
        "UPDATE destinations SET disabled_reason = ? WHERE job_id = ? AND idx = ?",
        (GONE_REASON, batch.job_id, batch.dest_idx),
    )
    fail_pending(conn, batch.job_id, batch.dest_idx, GONE_REASON)


def fail_pending(conn: Connection, job_id: str, dest_idx: int, reason: str) -> int:
    """Fail every pending batch of a disabled destination (one in flight included: its
    outcome is then ignored); returns how many."""
    sizes = conn.execute(
        "UPDATE webhook_batches SET state = 'failed', last_error = ?, lease_until = 0"
        " WHERE job_id = ? AND dest_idx = ? AND state = 'pending' RETURNING size",
        (reason, job_id, dest_idx),
    ).fetchall()
    conn.execute(
        "UPDATE destinations SET failed = failed + ?, last_error = ? WHERE job_id = ? AND idx = ?",
        (sum(row[0] for row in sizes), reason, job_id, dest_idx),
    )
    return len(sizes)
