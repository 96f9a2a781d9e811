"""Enricher settings: consumption, retries and the provider waterfall.

Providers are listed in waterfall order in `LEADFLOW_PROVIDERS` (`alpha,beta`); each
has `LEADFLOW_PROVIDER_<NAME>_KIND`, `_URL`, `_KEY`, `_TIMEOUT_S` and `_CONCURRENCY`. A name
is its own kind when it names a vendor (`hunter`, `pdl`, `apollo`, `dropcontact`), else the
kind is `http` (leadflow's own person-match protocol). In dev, unset URLs and keys point at
the sandbox (its emulation of the vendor for vendor kinds); in production keys must be
given, and so must URLs of `http` providers (a vendor's URL defaults to its public API).
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
HTTP_KIND = "http"
# Each vendor's public API root; the adapters add the documented paths (`/v2/email-finder`…),
# and the sandbox serves the same paths under `/vendors/<kind>`.
VENDOR_URLS = {
    "hunter": "https://api.hunter.io",
    "pdl": "https://api.peopledatalabs.com",
    "apollo": "https://api.apollo.io",
    "dropcontact": "https://api.dropcontact.com",
}
KINDS = (HTTP_KIND, *VENDOR_URLS)
# Dropcontact's docs ask for a poll every 30 s until a batch is ready; the sandbox is quicker.
DOC_POLL_S = 30.0
DEV_POLL_S = 0.2


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str = HTTP_KIND  # one of KINDS: which wire format the adapter speaks
    url: str
    key: str
    timeout_s: float
    concurrency: int
    rate_per_s: float  # 0: no limit
    bulk: bool  # the provider has a bulk endpoint (`<url>/v1/person/bulk`)
    cooldown_s: float  # after a 429 without Retry-After
    poll_s: float = DOC_POLL_S  # asynchronous vendors: time between polls for a result


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
        # At most the control stream's retention (shared/topology.py CONTROL_RETENTION):
        # an enricher that was down longer still learns of every job deleted since its
        # entries were stored.
        provider_cache_ttl_s=env.get_float(
            "LEADFLOW_PROVIDER_CACHE_TTL_S", 7 * 86400.0, maximum=7 * 86400.0
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
    kind = env.choice(f"{var}_KIND", name if name in KINDS else HTTP_KIND, KINDS)
    if kind == HTTP_KIND:
        require_in_production(env, common, f"{var}_URL", "the provider's API URL")
        default_url = f"{sandbox_url(env)}/providers/{name}"
    else:
        default_url = (
            VENDOR_URLS[kind] if common.is_production else f"{sandbox_url(env)}/vendors/{kind}"
        )
    require_in_production(env, common, f"{var}_KEY", "the provider's API key")
    return ProviderSettings(
        name=name,
        kind=kind,
        url=env.url(f"{var}_URL", default_url, schemes=("http", "https")).rstrip("/"),
        key=env.get_str(f"{var}_KEY", "sandbox-key"),
        timeout_s=env.get_float(f"{var}_TIMEOUT_S", 10.0, minimum=0.1, maximum=300),
        concurrency=env.get_int(f"{var}_CONCURRENCY", 64, minimum=1, maximum=10_000),
        rate_per_s=env.get_float(f"{var}_RATE_PER_S", 0.0, maximum=100_000),
        bulk=env.get_bool(f"{var}_BULK", True),
        cooldown_s=env.get_float(f"{var}_COOLDOWN_S", 30.0, minimum=0.1, maximum=86_400),
        poll_s=env.get_float(
            f"{var}_POLL_S",
            DOC_POLL_S if common.is_production else DEV_POLL_S,
            minimum=0.01,
            maximum=600,
        ),
    )
