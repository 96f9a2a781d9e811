"""Enricher settings: consumption, retries and the provider waterfall.

Providers are listed in waterfall order in `LEADFLOW_PROVIDERS` (`alpha,beta`); each
has `LEADFLOW_PROVIDER_<NAME>_URL`, `_KEY`, `_TIMEOUT_S` and `_CONCURRENCY`. In dev,
unset URLs and keys point at the sandbox; in production they must be given.
"""

from __future__ import annotations

import msgspec

from shared.config import (
    CommonSettings,
    EnvReader,
    WorkerSettings,
    load_common,
    load_worker,
    require_in_production,
    sandbox_url,
)
from shared.errors import ConfigError

DEV_PROVIDERS = "alpha,beta"


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    url: str
    key: str
    timeout_s: float
    concurrency: int
    rate_per_s: float  # 0: no limit
    bulk: bool  # the provider has a bulk endpoint (`<url>/v1/person/bulk`)
    cooldown_s: float  # after a 429 without Retry-After


class EnricherSettings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    worker: WorkerSettings
    providers: tuple[ProviderSettings, ...]
    provider_cache_ttl_s: float
    # Fault injection for the fault-test suite (dev only): crash on leads named so.
    fault_crash_on: str | None


def load_settings(env: EnvReader) -> EnricherSettings:
    common = load_common("enricher", env)
    require_in_production(env, common, "LEADFLOW_PROVIDERS", "the provider waterfall in production")
    names = env.names("LEADFLOW_PROVIDERS", DEV_PROVIDERS)
    return EnricherSettings(
        common=common,
        worker=load_worker(env, "LEADFLOW_ENRICH_PREFETCH", 8),
        providers=tuple(load_provider(env, common, name) for name in names),
        provider_cache_ttl_s=env.get_float(
            "LEADFLOW_PROVIDER_CACHE_TTL_S", 7 * 86400.0, maximum=365 * 86400.0
        ),
        fault_crash_on=load_fault(env, common),
    )


def load_fault(env: EnvReader, common: CommonSettings) -> str | None:
    marker = env.raw("LEADFLOW_FAULT_CRASH_ON")
    if marker is not None and common.is_production:
        raise ConfigError("LEADFLOW_FAULT_CRASH_ON", "no fault injection in production", marker)
    return marker


def load_provider(env: EnvReader, common: CommonSettings, name: str) -> ProviderSettings:
    var = f"LEADFLOW_PROVIDER_{name.upper().replace('-', '_')}"
    require_in_production(env, common, f"{var}_URL", "the provider's API URL")
    require_in_production(env, common, f"{var}_KEY", "the provider's API key")
    return ProviderSettings(
        name=name,
        url=env.url(
            f"{var}_URL", f"{sandbox_url(env)}/providers/{name}", schemes=("http", "https")
        ),
        key=env.get_str(f"{var}_KEY", "sandbox-key"),
        timeout_s=env.get_float(f"{var}_TIMEOUT_S", 10.0, minimum=0.1, maximum=300),
        concurrency=env.get_int(f"{var}_CONCURRENCY", 64, minimum=1, maximum=10_000),
        rate_per_s=env.get_float(f"{var}_RATE_PER_S", 0.0, maximum=100_000),
        bulk=env.get_bool(f"{var}_BULK", True),
        cooldown_s=env.get_float(f"{var}_COOLDOWN_S", 30.0, minimum=0.1, maximum=86_400),
    )
