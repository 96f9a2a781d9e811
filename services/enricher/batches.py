"""Submitted asynchronous batches (Dropcontact), kept in the store until their results are in.

A batch's request id is written down before the adapter waits for the results, keyed by
what the batch asked (the job and its records). A task redelivered after a crash, or
retried after the polls ran out, asks the same again: it finds the id and polls it instead
of submitting (and paying for) the batch a second time. The row stays after the results
came (polling a finished batch again is free, and covers a crash before its answers were
cached); an id older than `MAX_AGE_S` is not polled again, and is deleted by the next
`remember`: the vendor keeps results for a while only, and answers "not ready" for an id
it no longer knows, so polling it would never end.

Just before a batch is submitted, its row is written with no request id (`submitting`): a
redelivered task that finds such a row knows the submission was in flight when its
enricher died, and that the vendor may have it and charged it (it is submitted again: the
API has no other handle on a batch). The credit ledger uses that to price the lost call
(services/enricher/spending.py): a row with no id, the submission was paid for; no row at
all, the enricher died before submitting, and the vendor never saw it.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from typing import Any, Protocol

from shared.store import epoch_s

MAX_AGE_S = 6 * 3600.0
PENDING = ""  # the request id of a row written just before its batch is submitted
_in_flight: ContextVar[list[str] | None] = ContextVar("batches_in_flight", default=None)


def watch_submissions() -> None:
    """From here on in this context (and the tasks it starts), note the batches found
    submitting when an earlier attempt died (see the module's docstring)."""
    _in_flight.set([])


def submission_was_in_flight() -> bool:
    """Whether a batch asked since `watch_submissions()` was being submitted when an
    earlier attempt's enricher died."""
    return bool(_in_flight.get())


def _found(provider: str, request_id: str | None) -> str | None:
    if request_id != PENDING:
        return request_id
    noted = _in_flight.get()
    if noted is not None:
        noted.append(provider)
    return None


def batch_fingerprint(job_id: str, records: list[dict[str, Any]]) -> str:
    canonical = repr((job_id, [sorted(r.items()) for r in records]))
    return hashlib.sha256(canonical.encode()).hexdigest()


class BatchStore(Protocol):
    async def submitted(self, provider: str, fingerprint: str) -> str | None:
        """The request id of the batch that asked this, if one is pending."""

    async def remember(
        self, provider: str, fingerprint: str, request_id: str, job_id: str
    ) -> None: ...

    async def submitting(self, provider: str, fingerprint: str, job_id: str) -> None:
        """The batch is about to be submitted (a row with no request id yet)."""


class TransactionStore(Protocol):
    async def transaction(self, fn: Any) -> Any: ...


class StoreBatches:
    """`BatchStore` in the store's `provider_batches` table (migration 0010)."""

    def __init__(self, store: TransactionStore) -> None:
        self._store = store

    async def submitted(self, provider: str, fingerprint: str) -> str | None:
        oldest = epoch_s() - MAX_AGE_S

        def read(conn: Any) -> str | None:
            row = conn.execute(
                "SELECT request_id FROM provider_batches WHERE provider = ? AND fingerprint = ?"
                " AND submitted_at >= ?",
                (provider, fingerprint, oldest),
            ).fetchone()
            return None if row is None else str(row[0])

        found: str | None = await self._store.transaction(read)
        return _found(provider, found)

    async def submitting(self, provider: str, fingerprint: str, job_id: str) -> None:
        await self.remember(provider, fingerprint, PENDING, job_id)

    async def remember(self, provider: str, fingerprint: str, request_id: str, job_id: str) -> None:
        now = epoch_s()

        def write(conn: Any) -> None:
            conn.execute(
                "INSERT INTO provider_batches"
                " (provider, fingerprint, request_id, job_id, submitted_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, fingerprint) DO UPDATE"
                " SET request_id = excluded.request_id, job_id = excluded.job_id,"
                " submitted_at = excluded.submitted_at",
                (provider, fingerprint, request_id, job_id, now),
            )
            conn.execute("DELETE FROM provider_batches WHERE submitted_at < ?", (now - MAX_AGE_S,))

        await self._store.transaction(write)


class MemoryBatches:
    """Per process (unit tests; an enricher given no store)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}

    async def submitted(self, provider: str, fingerprint: str) -> str | None:
        return _found(provider, self.rows.get((provider, fingerprint)))

    async def submitting(self, provider: str, fingerprint: str, job_id: str) -> None:
        self.rows[(provider, fingerprint)] = PENDING

    async def remember(self, provider: str, fingerprint: str, request_id: str, job_id: str) -> None:
        self.rows[(provider, fingerprint)] = request_id
