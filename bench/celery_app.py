"""The Celery peer's app and per-lead work, shared by its worker and its publisher.

The work per lead is leadflow's own, imported from the enricher (its local steps, the
waterfall's `apply_answer` / `is_complete`, the provider request and reply shapes), so
both sides spend the same CPU on enrichment and differ only in the plumbing:

- one Celery task per lead, the idiomatic unit (leadflow carries 25 leads a message);
- provider calls over HTTP to the sandbox, alpha then beta while email or domain is
  missing, with keep-alive connections (one per worker thread or greenlet);
- the result row goes into SQLite (WAL, `synchronous=FULL` like leadflow's store), one
  commit per task, idempotent on (job_id, lead_id) since `acks_late` may redeliver.

Broker settings: `task_acks_late` (ack after the row is committed), persistent
delivery, `worker_prefetch_multiplier=1`, no result backend, no remote control or
events (nothing but the task queue on the broker), and publisher confirms on the
producer side when `confirm_publish` is set, to match leadflow's confirmed publishing.
"""

from __future__ import annotations

import http.client
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from celery import Celery

from services.enricher.draft import LeadDraft
from services.enricher.providers.http import PersonMatch, PersonQuery
from services.enricher.steps import run_final_steps, run_local_steps
from services.enricher.waterfall import WaterfallResult, apply_answer, is_complete
from shared.messages import Lead, ProviderAnswer

TASK_NAME = "bench.enrich_lead"
PROVIDERS = ("alpha", "beta")
HTTP_TIMEOUT_S = 10.0
SCHEMA = """CREATE TABLE IF NOT EXISTS leads (
    job_id TEXT NOT NULL, lead_id TEXT NOT NULL, status TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (job_id, lead_id))"""
_encode = msgspec.json.Encoder().encode
_decode_match = msgspec.json.Decoder(PersonMatch).decode


class ProviderFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class PeerSettings:
    amqp_url: str
    queue: str
    db_path: Path
    sandbox_url: str
    confirm_publish: bool = True

    def env(self) -> dict[str, str]:
        return {
            "BENCH_CELERY_BROKER": self.amqp_url,
            "BENCH_CELERY_QUEUE": self.queue,
            "BENCH_CELERY_DB": str(self.db_path),
            "BENCH_SANDBOX_URL": self.sandbox_url,
            "BENCH_CELERY_CONFIRM": "1" if self.confirm_publish else "0",
        }

    @classmethod
    def from_env(cls, env: dict[str, str]) -> PeerSettings:
        return cls(
            amqp_url=env["BENCH_CELERY_BROKER"],
            queue=env["BENCH_CELERY_QUEUE"],
            db_path=Path(env["BENCH_CELERY_DB"]),
            sandbox_url=env["BENCH_SANDBOX_URL"],
            confirm_publish=env.get("BENCH_CELERY_CONFIRM", "1") == "1",
        )


def make_app(settings: PeerSettings) -> Any:
    app = Celery("leadflow-bench-peer", broker=settings.amqp_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_delivery_mode="persistent",
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        task_default_exchange=settings.queue,
        task_default_routing_key=settings.queue,
        task_ignore_result=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"confirm_publish": settings.confirm_publish},
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def create_schema(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        conn.execute(SCHEMA)
        conn.commit()
    finally:
        conn.close()


def connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class PeerWork:
    """What one worker process holds: a store connection and HTTP connections per thread."""

    def __init__(self, settings: PeerSettings) -> None:
        parts = urlsplit(settings.sandbox_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._base = parts.path.rstrip("/")
        self._db = connect(settings.db_path)
        self._db_lock = threading.Lock()
        self._local = threading.local()

    def enrich(self, job_id: str, raw_lead: dict[str, Any]) -> None:
        draft = run_local_steps(LeadDraft.of(msgspec.convert(raw_lead, Lead)))
        for provider in PROVIDERS:
            if is_complete(draft):
                break
            if can_help(draft):
                found = self.lookup(provider, draft, job_id)
                answer = ProviderAnswer(provider=provider, found=found)
                apply_answer(draft, answer, WaterfallResult())
        result = run_final_steps(draft).result()
        self.store(job_id, result.id, result.status, _encode(result))

    def lookup(self, provider: str, draft: LeadDraft, job_id: str) -> dict[str, str]:
        query = PersonQuery(
            first_name=draft.get("first_name"),
            last_name=draft.get("last_name"),
            full_name=draft.get("full_name"),
            company=draft.get("company_clean") or draft.get("company"),
            company_domain=draft.get("company_domain"),
            linkedin_url=draft.get("linkedin_url"),
        )
        status, body = self.post(
            f"{self._base}/providers/{provider}/v1/person", _encode(query), job_id
        )
        if status == 404:
            return {}
        if status != 200:
            raise ProviderFailed(f"{provider}: HTTP {status} {body[:200]!r}")
        match = _decode_match(body)
        return {k: v for k, v in msgspec.structs.asdict(match).items() if isinstance(v, str) and v}

    def post(self, path: str, payload: bytes, job_id: str) -> tuple[int, bytes]:
        headers = {
            "Authorization": "Bearer sandbox-key",
            "Content-Type": "application/json",
            "X-Leadflow-Job": job_id,
        }
        for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.request("POST", path, body=payload, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
        raise ProviderFailed(f"POST {path}: connection failed twice")

    def _connection(self, *, fresh: bool) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=HTTP_TIMEOUT_S)
            self._local.conn = conn
        return conn

    def store(self, job_id: str, lead_id: str, status: str, data: bytes) -> None:
        with self._db_lock:
            self._db.execute(
                "INSERT INTO leads (job_id, lead_id, status, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job_id, lead_id) DO NOTHING",
                (job_id, lead_id, status, data),
            )
            self._db.commit()


def can_help(draft: LeadDraft) -> bool:
    """The same test as leadflow's `PersonMatchProvider.can_help`."""
    has_name = bool(draft.get("full_name") or (draft.get("first_name") and draft.get("last_name")))
    has_company = bool(draft.get("company") or draft.get("company_domain"))
    return (has_name and has_company) or bool(draft.get("linkedin_url"))
