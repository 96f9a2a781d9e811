"""Gateway settings: auth keys and their throttle, request limits, event-stream caps, how jobs
are cut into tasks."""

from __future__ import annotations

import hashlib
import re

import msgspec

from services.enricher.config import cache_ttl_s, provider_kinds
from shared.config import CommonSettings, EnvReader, load_common, webhook_allow_nets
from shared.errors import ConfigError
from shared.secretbox import SecretBox, load_secret_box

TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEV_TENANT = "default"
MIN_KEY_LENGTH = 8
# 32 characters of a random alphabet put a key out of reach of guessing, even unthrottled.
MIN_PRODUCTION_KEY_LENGTH = 32


class StreamLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Caps on `GET /v1/jobs/{id}/events` streams, per gateway process."""

    max_streams: int = 1000  # open at once, all tenants
    max_streams_per_tenant: int = 100
    # A stream is ended after this long (the client resumes with Last-Event-ID), so no
    # connection is held for ever and load rebalances across gateways.
    max_lifetime_s: float = 600.0


class AuthThrottle(msgspec.Struct, frozen=True, kw_only=True):
    """Failed-auth throttling per client address."""

    max_failures: int = 20  # wrong keys within the window; 0 turns the throttle off
    window_s: float = 60.0
    tracked_addresses: int = 10_000  # memory bound: least recently failing addresses go first
    # Peers whose X-Forwarded-For is believed (a reverse proxy in front of the gateway).
    trusted_proxies: tuple[str, ...] = ()


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
    # The enrichers' waterfall as (name, kind), for `dry_run` estimates.
    providers: tuple[tuple[str, str], ...] = ()
    provider_cache_ttl_s: float = 0.0  # the enrichers' cache (estimates read it)
    daily_quota_leads: int  # per tenant; 0: no quota
    secret_box: SecretBox  # seals webhook secrets before they are stored
    # Leads a file upload (multipart) may hold; JSON bodies stay bounded by the two above.
    max_upload_leads: int = 1_000_000
    streams: StreamLimits = StreamLimits()
    auth_throttle: AuthThrottle = AuthThrottle()

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


def load_settings(env: EnvReader) -> GatewaySettings:
    common = load_common("gateway", env)
    keys = parse_api_keys(
        env.get_str("LEADFLOW_API_KEYS", ""),
        MIN_PRODUCTION_KEY_LENGTH if common.is_production else MIN_KEY_LENGTH,
    )
    if common.is_production and not keys:
        raise ConfigError("LEADFLOW_API_KEYS", "tenant:key pairs in production", "<unset>")
    return GatewaySettings(
        common=common,
        api_keys=keys,
        max_leads_per_job=env.get_int("LEADFLOW_MAX_LEADS_PER_JOB", 10_000, minimum=1),
        max_body_bytes=env.get_int("LEADFLOW_MAX_BODY_BYTES", 16 * 1024**2, minimum=1024),
        max_upload_leads=env.get_int("LEADFLOW_MAX_UPLOAD_LEADS", 1_000_000, minimum=1),
        task_batch_size=env.get_int("LEADFLOW_TASK_BATCH_SIZE", 25, minimum=1, maximum=1000),
        publish_timeout_s=publish_timeout_s(env),
        webhook_allow_nets=webhook_allow_nets(env, common),
        default_timeout_s=default_timeout_s(env),
        delete_exports=env.get_bool("LEADFLOW_DELETE_EXPORTS", False),
        sources=env.names("LEADFLOW_SOURCES", "sandbox"),
        providers=provider_kinds(env),
        provider_cache_ttl_s=cache_ttl_s(env),
        daily_quota_leads=daily_quota_leads(env),
        secret_box=load_secret_box(env, common),
        streams=load_stream_limits(env),
        auth_throttle=load_auth_throttle(env),
    )


# Read by the gateway and by the router, whose scheduler submits saved searches' jobs as
# the gateway does.
def publish_timeout_s(env: EnvReader) -> float:
    return env.get_float("LEADFLOW_PUBLISH_TIMEOUT_S", 10.0, minimum=0.1)


def default_timeout_s(env: EnvReader) -> int:
    return env.get_int("LEADFLOW_DEFAULT_TIMEOUT_S", 3600, minimum=1, maximum=7 * 86400)


def daily_quota_leads(env: EnvReader) -> int:
    return env.get_int("LEADFLOW_DAILY_QUOTA_LEADS", 0)


def load_stream_limits(env: EnvReader) -> StreamLimits:
    default = StreamLimits()
    return StreamLimits(
        max_streams=env.get_int(
            "LEADFLOW_SSE_MAX_STREAMS", default.max_streams, minimum=1, maximum=1_000_000
        ),
        max_streams_per_tenant=env.get_int(
            "LEADFLOW_SSE_MAX_STREAMS_PER_TENANT",
            default.max_streams_per_tenant,
            minimum=1,
            maximum=1_000_000,
        ),
        max_lifetime_s=env.get_float(
            "LEADFLOW_SSE_MAX_LIFETIME_S", default.max_lifetime_s, minimum=1.0, maximum=86_400.0
        ),
    )


def load_auth_throttle(env: EnvReader) -> AuthThrottle:
    default = AuthThrottle()
    return AuthThrottle(
        max_failures=env.get_int(
            "LEADFLOW_AUTH_MAX_FAILURES", default.max_failures, minimum=0, maximum=1_000_000
        ),
        window_s=env.get_float(
            "LEADFLOW_AUTH_FAILURE_WINDOW_S", default.window_s, minimum=1.0, maximum=86_400.0
        ),
        tracked_addresses=env.get_int(
            "LEADFLOW_AUTH_TRACKED_ADDRESSES",
            default.tracked_addresses,
            minimum=1,
            maximum=10_000_000,
        ),
        trusted_proxies=env.networks("LEADFLOW_AUTH_TRUSTED_PROXIES", ""),
    )


def parse_api_keys(value: str, min_length: int = MIN_KEY_LENGTH) -> dict[str, str]:
    """sha256(key) -> tenant. Errors name the tenant, never any part of a key."""
    keys: dict[str, str] = {}
    entries = filter(None, (p.strip() for p in value.split(",")))
    for number, pair in enumerate(entries, start=1):
        tenant, sep, key = pair.partition(":")
        # Without a valid tenant before the colon the entry may be a bare key: not shown.
        shown = f"{tenant}:…" if sep and TENANT.match(tenant) else f"entry {number} (not shown)"
        if not sep or not TENANT.match(tenant) or len(key) < min_length:
            raise ConfigError(
                "LEADFLOW_API_KEYS",
                "tenant:key[,tenant:key...] with lower-case tenant names and keys of "
                f"{min_length}+ characters"
                + (" in production" if min_length > MIN_KEY_LENGTH else ""),
                shown,
            )
        digest = key_digest(key)
        if digest in keys:
            raise ConfigError("LEADFLOW_API_KEYS", "each key used by one tenant only", shown)
        keys[digest] = tenant
    return keys


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
