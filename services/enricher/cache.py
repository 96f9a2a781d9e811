"""Provider answers kept by lead fingerprint, so a provider is paid once per lead.

A crash between a provider's answer and the ack of the task would otherwise make the
redelivered task call that provider again; the cache also saves credits when the same
person comes back in another job of the same tenant. Entries expire after a TTL.
It lives in its own SQLite file under the data dir (one per machine).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import msgspec

from shared.messages import ProviderAnswer
from shared.store import Store, epoch_s

CACHE_MIGRATIONS = (
    """
CREATE TABLE IF NOT EXISTS provider_answers (
    tenant TEXT NOT NULL,
    provider TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    found BLOB NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (tenant, provider, fingerprint)
);
""",
    # `found` holds a whole ProviderAnswer from here on (a refusal is an answer too).
    "DELETE FROM provider_answers",
)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ProviderAnswer).decode


def fingerprint(query: dict[str, str | None]) -> str:
    """What identifies the question asked: the normalised fields sent to the provider."""
    canonical = "\x1f".join(f"{k}={(v or '').strip().lower()}" for k, v in sorted(query.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ProviderCache:
    def __init__(self, path: Path, ttl_s: float) -> None:
        # Losing the last cache writes on power loss costs a repeated call, not a lead.
        self.store = Store(path, CACHE_MIGRATIONS, durable=False)
        self.ttl_s = ttl_s

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def get_many(
        self, tenant: str, provider: str, keys: list[str]
    ) -> dict[str, ProviderAnswer]:
        """The cached answers among `keys`, by fingerprint."""
        if not self.enabled or not keys:
            return {}
        oldest = epoch_s() - self.ttl_s

        def read(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            marks = ", ".join("?" * len(keys))
            rows = conn.execute(
                "SELECT fingerprint, found FROM provider_answers WHERE tenant = ?"
                f" AND provider = ? AND fingerprint IN ({marks}) AND stored_at >= ?",
                (tenant, provider, *keys, oldest),
            ).fetchall()
            return [(row[0], bytes(row[1])) for row in rows]

        return {key: _decode(raw) for key, raw in await self.store.run(read)}

    async def put_many(
        self, tenant: str, provider: str, answers: dict[str, ProviderAnswer]
    ) -> None:
        if not self.enabled or not answers:
            return
        now = epoch_s()
        rows = [(tenant, provider, key, _encode(answer), now) for key, answer in answers.items()]
        await self.store.transaction(
            lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO provider_answers VALUES (?, ?, ?, ?, ?)", rows
            )
        )
