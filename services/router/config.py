"""Router settings: event batching and webhook delivery (pool, limits, circuit, secrets)."""

from __future__ import annotations

import msgspec

from services.gateway.config import daily_quota_leads, default_timeout_s, publish_timeout_s
from shared.config import CommonSettings, EnvReader, load_common, webhook_allow_nets
from shared.secretbox import SecretBox, load_secret_box


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    timeout_s: float
    retry_window_s: float
    backoff_base_s: float
    backoff_max_s: float
    concurrency: int  # deliveries in flight per router
    # Of those, at most this many to one receiver (scheme, host and port) and of one tenant,
    # so a receiver that hangs, or a tenant with many, cannot take every slot.
    receiver_concurrency: int
    tenant_concurrency: int
    # A receiver failing this many deliveries in a row is not tried for the cool-off,
    # then one delivery tests it (half-open).
    circuit_failures: int
    circuit_cooloff_s: float
    allow_nets: tuple[str, ...]
    secret_box: SecretBox  # opens the sealed secrets batches are signed with


class RouterSettings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    max_batch: int
    stall_after_s: float
    alert_webhook_url: str | None
    retention_days: float
    delete_exports: bool
    dead_letter_retention_days: float  # 0: dead letters stay until their job goes
    upkeep_interval_s: float
    task_batch_size: int
    webhook: WebhookSettings
    # Saved searches' runs are submitted as the gateway submits a job, with its settings.
    publish_timeout_s: float
    default_timeout_s: int
    daily_quota_leads: int
    daily_exports: bool  # write exports/<tenant>/daily/<date>.csv once each UTC day is over


def load_settings(env: EnvReader) -> RouterSettings:
    common = load_common("router", env)
    return RouterSettings(
        common=common,
        max_batch=env.get_int("LEADFLOW_ROUTER_BATCH", 200, minimum=1, maximum=5000),
        stall_after_s=env.get_float("LEADFLOW_STALL_AFTER_S", 300.0, minimum=1.0),
        alert_webhook_url=(
            env.url("LEADFLOW_ALERT_WEBHOOK_URL", "http://unset", schemes=("http", "https"))
            if env.is_set("LEADFLOW_ALERT_WEBHOOK_URL")
            else None
        ),
        retention_days=env.get_float("LEADFLOW_RETENTION_DAYS", 30.0, minimum=0.0),
        delete_exports=env.get_bool("LEADFLOW_DELETE_EXPORTS", False),
        dead_letter_retention_days=env.get_float(
            "LEADFLOW_DEAD_LETTER_RETENTION_DAYS", 30.0, minimum=0.0
        ),
        task_batch_size=env.get_int("LEADFLOW_TASK_BATCH_SIZE", 25, minimum=1, maximum=1000),
        upkeep_interval_s=env.get_float(
            "LEADFLOW_UPKEEP_INTERVAL_S", 1.0, minimum=0.1, maximum=3600
        ),
        webhook=load_webhook_settings(env, common),
        publish_timeout_s=publish_timeout_s(env),
        default_timeout_s=default_timeout_s(env),
        daily_quota_leads=daily_quota_leads(env),
        daily_exports=env.get_bool("LEADFLOW_DAILY_EXPORTS", False),
    )


def load_webhook_settings(env: EnvReader, common: CommonSettings) -> WebhookSettings:
    concurrency = env.get_int("LEADFLOW_WEBHOOK_CONCURRENCY", 16, minimum=1, maximum=1000)
    # Defaults leave most slots to others: a quarter per receiver, half per tenant.
    return WebhookSettings(
        timeout_s=env.get_float("LEADFLOW_WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1, maximum=300),
        retry_window_s=env.get_float(
            "LEADFLOW_WEBHOOK_RETRY_WINDOW_S", 3600.0, minimum=0.0, maximum=7 * 86400
        ),
        backoff_base_s=env.get_float("LEADFLOW_WEBHOOK_BACKOFF_BASE_S", 1.0, minimum=0.01),
        backoff_max_s=env.get_float("LEADFLOW_WEBHOOK_BACKOFF_MAX_S", 300.0, minimum=0.01),
        concurrency=concurrency,
        receiver_concurrency=env.get_int(
            "LEADFLOW_WEBHOOK_RECEIVER_CONCURRENCY",
            max(1, concurrency // 4),
            minimum=1,
            maximum=concurrency,
        ),
        tenant_concurrency=env.get_int(
            "LEADFLOW_WEBHOOK_TENANT_CONCURRENCY",
            max(1, concurrency // 2),
            minimum=1,
            maximum=concurrency,
        ),
        circuit_failures=env.get_int(
            "LEADFLOW_WEBHOOK_CIRCUIT_FAILURES", 5, minimum=1, maximum=1000
        ),
        circuit_cooloff_s=env.get_float(
            "LEADFLOW_WEBHOOK_CIRCUIT_COOLOFF_S", 30.0, minimum=0.1, maximum=86400
        ),
        allow_nets=webhook_allow_nets(env, common),
        secret_box=load_secret_box(env, common),
    )
