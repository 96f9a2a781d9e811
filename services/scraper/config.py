"""Scraper settings: consumption, retries and the lead sources.

Sources are listed in `LEADFLOW_SOURCES` (`sandbox`); each has `LEADFLOW_SOURCE_<NAME>_URL`,
`_KEYS` (one API key per account, comma-separated), `_RATE_PER_S` (per account),
`_TIMEOUT_S`, `_PAGE_SIZE` and `_COOLDOWN_S` (after a 429 without Retry-After). In dev,
unset URLs and keys point at the sandbox; in production they must be given. All but
`_PAGE_SIZE` are read like every external API's (shared/config.py `load_api`).
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

DEV_SOURCES = "sandbox"


SOURCES = ApiKind(
    prefix="SOURCE",
    what="source",
    keys_var="KEYS",
    max_keys=None,
    dev_keys="{name}-acct-1,{name}-acct-2",
    timeout_s=15.0,
    rate_per_s=5.0,
    max_rate_per_s=10_000,
    cooldown_s=60.0,
)


class SourceSettings(ApiSettings, frozen=True, kw_only=True):
    page_size: int


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
    return load_api(
        env,
        common,
        SOURCES,
        SourceSettings,
        name,
        dev_url=f"{sandbox_url(env)}/sources/{name}",
        page_size=env.get_int(f"{SOURCES.var(name)}_PAGE_SIZE", 25, minimum=1, maximum=1000),
    )
