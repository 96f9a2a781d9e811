"""Router settings: event batching and webhook delivery."""

from __future__ import annotations

import msgspec

from shared.config import CommonSettings, EnvReader, load_common, webhook_allow_nets


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    timeout_s: float
    retry_window_s: float
    backoff_base_s: float
    backoff_max_s: float
    concurrency: int
    allow_nets: tuple[str, ...]


class RouterSettings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    max_batch: int
    stall_after_s: float
    alert_webhook_url: str | None
    retention_days: float
    delete_exports: bool
    upkeep_interval_s: float
    task_batch_size: int
    webhook: WebhookSettings


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
        task_batch_size=env.get_int("LEADFLOW_TASK_BATCH_SIZE", 25, minimum=1, maximum=1000),
        upkeep_interval_s=env.get_float(
            "LEADFLOW_UPKEEP_INTERVAL_S", 1.0, minimum=0.1, maximum=3600
        ),
        webhook=WebhookSettings(
            timeout_s=env.get_float("LEADFLOW_WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1, maximum=300),
            retry_window_s=env.get_float(
                "LEADFLOW_WEBHOOK_RETRY_WINDOW_S", 3600.0, minimum=0.0, maximum=7 * 86400
            ),
            backoff_base_s=env.get_float("LEADFLOW_WEBHOOK_BACKOFF_BASE_S", 1.0, minimum=0.01),
            backoff_max_s=env.get_float("LEADFLOW_WEBHOOK_BACKOFF_MAX_S", 300.0, minimum=0.01),
            concurrency=env.get_int("LEADFLOW_WEBHOOK_CONCURRENCY", 16, minimum=1, maximum=1000),
            allow_nets=webhook_allow_nets(env, common),
        ),
    )
