"""Scraper settings: consumption, retries and the lead sources.

Sources are listed in `LEADFLOW_SOURCES` (`sandbox`); each has `LEADFLOW_SOURCE_<NAME>_URL`,
`_KEYS` (one API key per account, comma-separated), `_RATE_PER_S` (per account),
`_TIMEOUT_S`, `_PAGE_SIZE` and `_COOLDOWN_S` (after a 429 without Retry-After). In dev,
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

DEV_SOURCES = "sandbox"


class SourceSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    url: str
    keys: tuple[str, ...]
    rate_per_s: float
    timeout_s: float
    page_size: int
    cooldown_s: float


class ScraperSettings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    worker: WorkerSettings
    task_batch_size: int
    sources: tuple[SourceSettings, ...]


def load_settings(env: EnvReader) -> ScraperSettings:
    common = load_common("scraper", env)
    require_in_production(env, common, "LEADFLOW_SOURCES", "the lead sources in production")
    return ScraperSettings(
        common=common,
        worker=load_worker(env, "LEADFLOW_SCRAPE_PREFETCH", 4),
        task_batch_size=env.get_int("LEADFLOW_TASK_BATCH_SIZE", 25, minimum=1, maximum=1000),
        sources=tuple(
            load_source(env, common, name) for name in env.names("LEADFLOW_SOURCES", DEV_SOURCES)
        ),
    )


def load_source(env: EnvReader, common: CommonSettings, name: str) -> SourceSettings:
    var = f"LEADFLOW_SOURCE_{name.upper().replace('-', '_')}"
    require_in_production(env, common, f"{var}_URL", "the source's API URL")
    require_in_production(env, common, f"{var}_KEYS", "the source's API keys")
    keys = tuple(
        k.strip()
        for k in env.get_str(f"{var}_KEYS", f"{name}-acct-1,{name}-acct-2").split(",")
        if k.strip()
    )
    if not keys:
        raise ConfigError(f"{var}_KEYS", "one API key per account, comma-separated", "")
    return SourceSettings(
        name=name,
        url=env.url(f"{var}_URL", f"{sandbox_url(env)}/sources/{name}", schemes=("http", "https")),
        keys=keys,
        rate_per_s=env.get_float(f"{var}_RATE_PER_S", 5.0, maximum=10_000),
        timeout_s=env.get_float(f"{var}_TIMEOUT_S", 15.0, minimum=0.1, maximum=300),
        page_size=env.get_int(f"{var}_PAGE_SIZE", 25, minimum=1, maximum=1000),
        cooldown_s=env.get_float(f"{var}_COOLDOWN_S", 60.0, minimum=0.1, maximum=86_400),
    )
