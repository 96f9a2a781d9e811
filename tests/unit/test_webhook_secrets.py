"""Webhook secrets: sealed at rest (`LEADFLOW_SECRET_KEY`), never stored or answered in
plain text, opened by the router to sign; rotation sends both signatures during the
overlap, checked with the Standard Webhooks reference library."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import msgspec
import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.gateway.config import load_settings as load_gateway
from services.gateway.deliveries import SecretRotation, rotate_secret
from services.gateway.newjobs import enrich_job
from services.gateway.schemas import EnrichJobRequest
from services.gateway.submit import JobSubmitter
from services.router.destinations.webhook import Batch, build_payload, signed_headers
from services.router.ledger import cut_webhook_batches, record_events
from shared.config import EnvReader, load_common
from shared.dbapi import Connection
from shared.errors import ConfigError
from shared.messages import Lead, LeadsEnriched, ResultLead
from shared.secretbox import SecretBox, SecretUnreadable, load_secret_box
from shared.store import Store

OLD = "whsec_" + base64.b64encode(b"the-old-secret-0123456789abcdef").decode()
NEW = "whsec_" + base64.b64encode(b"the-new-secret-0123456789abcdef").decode()


def test_sealed_secrets_open_with_the_key_only() -> None:
    key = Fernet.generate_key().decode()
    box = SecretBox([key])
    sealed = box.seal(OLD)
    assert OLD not in sealed
    assert box.open(sealed) == OLD
    with pytest.raises(SecretUnreadable):
        SecretBox([Fernet.generate_key().decode()]).open(sealed)
    # The key itself rotates: the first key seals, every listed key opens.
    rotated = load_secret_box(
        EnvReader({"LEADFLOW_SECRET_KEY": f"{Fernet.generate_key().decode()},{key}"}),
        load_common("router", EnvReader({})),
    )
    assert rotated.open(sealed) == OLD
    assert (
        box.open("a plain secret from an older version") == "a plain secret from an older version"
    )
    assert key not in repr(box)


def test_the_key_is_required_in_production_and_checked() -> None:
    prod = {
        "LEADFLOW_ENV": "production",
        "LEADFLOW_DATA_DIR": "/data",
        "LEADFLOW_AMQP_URL": "amqp://lf:pw@mq/",
    }
    common = load_common("router", EnvReader(prod))
    with pytest.raises(ConfigError, match="LEADFLOW_SECRET_KEY"):
        load_secret_box(EnvReader(prod), common)
    with pytest.raises(ConfigError, match="LEADFLOW_SECRET_KEY"):
        load_secret_box(EnvReader({**prod, "LEADFLOW_SECRET_KEY": "not-a-key"}), common)
    good = load_secret_box(
        EnvReader({**prod, "LEADFLOW_SECRET_KEY": Fernet.generate_key().decode()}), common
    )
    assert not good.dev_key
    assert load_secret_box(EnvReader({}), load_common("router", EnvReader({}))).dev_key


async def record_job(store: Store, secret: str) -> str:
    """What the gateway does with a POST: build the job and insert it (no broker needed)."""
    settings = load_gateway(EnvReader({}))
    request = msgspec.json.decode(
        msgspec.json.encode(
            {
                "leads": [{"full_name": "Ada Lovelace"}],
                "destinations": [
                    {"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": secret}
                ],
            }
        ),
        type=EnrichJobRequest,
    )
    leads = [Lead(id="l1", full_name="Ada Lovelace")]
    job = await enrich_job(request, leads, "acme", settings, store)
    submitter = JobSubmitter(store, None, 1.0, 0)  # type: ignore[arg-type]  # insert only
    await store.transaction(lambda c: submitter.insert(c, "acme", "job_1", job, None, "digest"))
    return "job_1"


def finish(conn: Connection, job_id: str) -> Batch:
    record_events(conn, [LeadsEnriched(job_id=job_id, tenant="acme", leads=[ResultLead(id="l1")])])
    conn.execute("UPDATE jobs SET state = 'completed' WHERE job_id = ?", (job_id,))
    cut_webhook_batches(conn, job_id)
    row = conn.execute(
        "SELECT job_id, dest_idx, batch_no, webhook_id, first_seq, last_seq, size, attempts,"
        " created_at FROM webhook_batches WHERE job_id = ?",
        (job_id,),
    ).fetchone()
    return Batch(*row)


async def test_the_store_holds_no_plain_secret_and_the_router_signs_with_it(
    store: Store, tmp_path: Path
) -> None:
    job_id = await record_job(store, OLD)
    batch = await store.transaction(lambda c: finish(c, job_id))
    # Every byte the store wrote (database file and WAL alike).
    files = await asyncio.to_thread(lambda: [p.read_bytes() for p in tmp_path.glob("db.sqlite*")])
    assert files
    for raw in files:
        assert OLD.encode() not in raw
        assert OLD.removeprefix("whsec_").encode() not in raw
    payload = await store.run(lambda c: build_payload(c, batch, time.time()))
    assert payload is not None
    box = load_gateway(EnvReader({})).secret_box  # the router's dev key is the same
    headers = signed_headers(batch.webhook_id, payload.body, *map(box.open, payload.sealed_secrets))
    assert Webhook(OLD).verify(payload.body, headers) == msgspec.json.decode(payload.body)


async def test_rotation_signs_with_both_secrets_during_the_overlap_only(store: Store) -> None:
    job_id = await record_job(store, OLD)
    batch = await store.transaction(lambda c: finish(c, job_id))
    box = load_gateway(EnvReader({})).secret_box
    rotation = SecretRotation(secret=NEW, overlap_s=3600)
    await store.transaction(lambda c: rotate_secret(c, job_id, 0, rotation, box))

    async def headers_at(now: float) -> tuple[bytes, dict[str, str]]:
        payload = await store.run(lambda c: build_payload(c, batch, now))
        assert payload is not None
        secrets = [box.open(s) for s in payload.sealed_secrets]
        return payload.body, signed_headers(batch.webhook_id, payload.body, *secrets)

    body, headers = await headers_at(time.time())
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(OLD).verify(body, headers)
    Webhook(NEW).verify(body, headers)
    body, headers = await headers_at(time.time() + 3601)  # the overlap is over
    assert len(headers["webhook-signature"].split(" ")) == 1
    Webhook(NEW).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(body, headers)
    # No overlap: the new secret alone at once.
    third = "whsec_" + base64.b64encode(b"a-third-secret-0123456789abcdef").decode()
    await store.transaction(
        lambda c: rotate_secret(c, job_id, 0, SecretRotation(secret=third, overlap_s=0), box)
    )
    body, headers = await headers_at(time.time())
    Webhook(third).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(body, headers)
