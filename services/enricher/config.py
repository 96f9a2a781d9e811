"""Enricher settings: consumption, retries and the provider waterfall.

Providers are listed in waterfall order in `LEADFLOW_PROVIDERS` (`alpha,beta`); each
has `LEADFLOW_PROVIDER_<NAME>_KIND`, `_URL`, `_KEYS` (a pool, comma-separated; or `_KEY`),
`_LIMITS` (each key's windows, `15/s,500/min`), `_TIMEOUT_S`, `_RATE_PER_S`, `_COOLDOWN_S`
(read like every external API's, shared/config.py `load_api`), and its own
`_CONCURRENCY`, `_BULK` and `_POLL_S`. `_CONCURRENCY`, when set, holds across every
enricher process (shared/limits.py leases); unset, each process allows 64 at once.
A name is its own kind when it names a vendor (`hunter`, `pdl`, `apollo`,
`dropcontact`), else the kind is `http` (leadflow's own person-match protocol). In dev,
unset URLs and keys point at the sandbox (its emulation of the vendor for vendor kinds);
in production keys must be given, and so must URLs of `http` providers (a vendor's URL
defaults to its public API).
"""

from __future__ import annotations

import msgspec

from shared.config import (
    ApiKind,
    ApiSettings,
    CommonSettings,
    EnvReader,
    WorkerSettings,
    load_api,
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
VERIFIER_KINDS = ("hunter",)  # adapters with an email verifier
# Dropcontact's docs ask for a poll every 30 s until a batch is ready; the sandbox is quicker.
DOC_POLL_S = 30.0
DEV_POLL_S = 0.2


PROVIDERS = ApiKind(
    prefix="PROVIDER",
    what="provider",
    keys_var="KEYS",
    max_keys=None,
    dev_keys="sandbox-key",
    timeout_s=10.0,
    rate_per_s=0.0,
    max_rate_per_s=100_000,
    cooldown_s=30.0,
)


class ProviderSettings(ApiSettings, frozen=True, kw_only=True):
    kind: str = HTTP_KIND  # one of KINDS: which wire format the adapter speaks
    concurrency: int
    # `_CONCURRENCY` was set: it bounds the requests in flight of all enrichers together.
    shared_concurrency: bool = False
    bulk: bool  # the provider has a bulk endpoint (`<url>/v1/person/bulk`)
    poll_s: float = DOC_POLL_S  # asynchronous vendors: time between polls for a result

    @property
    def key(self) -> str:
        return self.keys[0]


class EnricherSettings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    worker: WorkerSettings
    providers: tuple[ProviderSettings, ...]
    # `LEADFLOW_VERIFIER`: the provider whose email verification checks found emails whose
    # status is missing or unknown (a kind in VERIFIER_KINDS), or None.
    verifier: ProviderSettings | None = None
    provider_cache_ttl_s: float
    # Credits a tenant may spend per UTC day, every provider together (0: no budget).
    daily_credit_budget: int
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
        verifier=load_verifier(env, common),
        provider_cache_ttl_s=cache_ttl_s(env),
        daily_credit_budget=env.get_int(
            "LEADFLOW_DAILY_CREDIT_BUDGET", 0, minimum=0, maximum=10**12
        ),
        fault_crash_on=load_fault(env, common),
    )


def load_verifier(env: EnvReader, common: CommonSettings) -> ProviderSettings | None:
    name = env.raw("LEADFLOW_VERIFIER")
    if name is None:
        return None
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError("LEADFLOW_VERIFIER", "a provider name", name)
    settings = load_provider(env, common, name)
    if settings.kind not in VERIFIER_KINDS:
        expected = f"a provider whose kind verifies emails ({', '.join(VERIFIER_KINDS)})"
        raise ConfigError("LEADFLOW_VERIFIER", expected, f"{name} (kind {settings.kind})")
    return settings


def load_fault(env: EnvReader, common: CommonSettings) -> str | None:
    marker = env.raw("LEADFLOW_FAULT_CRASH_ON")
    if marker is not None and common.is_production:
        raise ConfigError("LEADFLOW_FAULT_CRASH_ON", "no fault injection in production", marker)
    return marker


def cache_ttl_s(env: EnvReader) -> float:
    # At most the control stream's retention (shared/topology.py CONTROL_RETENTION):
    # an enricher that was down longer still learns of every job deleted since its
    # entries were stored.
    return env.get_float("LEADFLOW_PROVIDER_CACHE_TTL_S", 7 * 86400.0, maximum=7 * 86400.0)


def provider_kind(env: EnvReader, name: str) -> str:
    """The adapter kind of provider `name`: `_KIND`, else its name if it names a vendor."""
    return env.choice(f"{PROVIDERS.var(name)}_KIND", name if name in KINDS else HTTP_KIND, KINDS)


def provider_kinds(env: EnvReader) -> tuple[tuple[str, str], ...]:
    """The waterfall as (name, kind), in order (the gateway's estimates read it too)."""
    return tuple(
        (name, provider_kind(env, name)) for name in env.names("LEADFLOW_PROVIDERS", DEV_PROVIDERS)
    )


def load_provider(env: EnvReader, common: CommonSettings, name: str) -> ProviderSettings:
    var = PROVIDERS.var(name)
    kind = provider_kind(env, name)
    dev_path = f"providers/{name}" if kind == HTTP_KIND else f"vendors/{kind}"
    return load_api(
        env,
        common,
        PROVIDERS,
        ProviderSettings,
        name,
        dev_url=f"{sandbox_url(env)}/{dev_path}",
        public_url=VENDOR_URLS.get(kind),
        kind=kind,
        concurrency=env.get_int(f"{var}_CONCURRENCY", 64, minimum=1, maximum=10_000),
        shared_concurrency=env.is_set(f"{var}_CONCURRENCY"),
        bulk=env.get_bool(f"{var}_BULK", True),
        poll_s=env.get_float(
            f"{var}_POLL_S",
            DOC_POLL_S if common.is_production else DEV_POLL_S,
            minimum=0.01,
            maximum=600,
        ),
    )
