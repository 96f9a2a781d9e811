"""Gateway settings: auth keys, request limits, how jobs are cut into tasks."""

from __future__ import annotations

import hashlib
import re

import msgspec

from shared.config import CommonSettings, EnvReader, load_common, webhook_allow_nets
from shared.errors import ConfigError

TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEV_TENANT = "default"


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    # sha256(key) -> tenant; empty means auth is off (dev only).
    api_keys: dict[str, str]
    max_leads_per_job: int
    max_body_bytes: int
    task_batch_size: int
    publish_timeout_s: float
    webhook_allow_nets: tuple[str, ...]
    default_timeout_s: int
    delete_exports: bool
    sources: tuple[str, ...]  # lead sources a scrape job may name
    daily_quota_leads: int  # per tenant; 0: no quota

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


def load_settings(env: EnvReader) -> GatewaySettings:
    common = load_common("gateway", env)
    keys = parse_api_keys(env.get_str("LEADFLOW_API_KEYS", ""))
    if common.is_production and not keys:
        raise ConfigError("LEADFLOW_API_KEYS", "tenant:key pairs in production", "<unset>")
    return GatewaySettings(
        common=common,
        api_keys=keys,
        max_leads_per_job=env.get_int("LEADFLOW_MAX_LEADS_PER_JOB", 10_000, minimum=1),
        max_body_bytes=env.get_int("LEADFLOW_MAX_BODY_BYTES", 16 * 1024**2, minimum=1024),
        task_batch_size=env.get_int("LEADFLOW_TASK_BATCH_SIZE", 25, minimum=1, maximum=1000),
        publish_timeout_s=env.get_float("LEADFLOW_PUBLISH_TIMEOUT_S", 10.0, minimum=0.1),
        webhook_allow_nets=webhook_allow_nets(env, common),
        default_timeout_s=env.get_int(
            "LEADFLOW_DEFAULT_TIMEOUT_S", 3600, minimum=1, maximum=7 * 86400
        ),
        delete_exports=env.get_bool("LEADFLOW_DELETE_EXPORTS", False),
        sources=env.names("LEADFLOW_SOURCES", "sandbox"),
        daily_quota_leads=env.get_int("LEADFLOW_DAILY_QUOTA_LEADS", 0),
    )


def parse_api_keys(value: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        tenant, sep, key = pair.partition(":")
        if not sep or not TENANT.match(tenant) or len(key) < 8:
            raise ConfigError(
                "LEADFLOW_API_KEYS",
                "tenant:key[,tenant:key...] with lower-case tenant names and keys of 8+ characters",
                pair.split(":", 1)[0] + ":…",
            )
        digest = key_digest(key)
        if digest in keys:
            raise ConfigError(
                "LEADFLOW_API_KEYS", "each key used by one tenant only", tenant + ":…"
            )
        keys[digest] = tenant
    return keys


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
