"""Sandbox settings: its port and the default knobs (each can be changed per run over HTTP)."""

from __future__ import annotations

import msgspec

from shared.config import CommonSettings, EnvReader, load_common


class SourceFault(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Answer `status` to the first `times` requests for `page` of `source`."""

    source: str
    page: int
    status: int = 429
    times: int = 1
    retry_after_s: float = 2.0


class Knobs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How badly the fake providers behave; `PUT /_sandbox/config` replaces them per run."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    malformed_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    # People (by a piece of their name) every provider is unavailable for: a poison lead.
    unavailable_for: list[str] = msgspec.field(default_factory=list)
    source_faults: list[SourceFault] = msgspec.field(default_factory=list)
    # Fraction of people a provider knows, by provider; a provider not listed knows half.
    coverage: dict[str, float] = msgspec.field(
        default_factory=lambda: {"alpha": 0.55, "beta": 0.65, "gamma": 0.5}
    )
    # Requests per second allowed per API key (a sliding one-second window; a bulk call is
    # one request), by provider (`alpha`), vendor emulation (`hunter`) or source
    # (`sandbox`); none when absent. Beyond it: 429 + Retry-After, or the vendor's signal.
    rate_limits: dict[str, float] = msgspec.field(default_factory=dict)
    # API keys every vendor emulation refuses as invalid, and ones whose credits are spent.
    bad_keys: list[str] = msgspec.field(default_factory=lambda: ["invalid-key"])
    exhausted_keys: list[str] = msgspec.field(default_factory=lambda: ["no-credits-key"])
    # Dropcontact: how many polls of a batch answer "not ready yet" before its results.
    dropcontact_polls_until_ready: int = 1
    # The source's lists move: each new search (a first page) of a query starts this many
    # people further down its list than the previous one, so a later search returns
    # overlapping pages with that many new people (saved searches' `only_new`).
    source_shift_per_search: int = 0


class SandboxSettings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    knobs: Knobs
    seed: int


def load_settings(env: EnvReader) -> SandboxSettings:
    return SandboxSettings(
        common=load_common("sandbox", env),
        knobs=Knobs(
            latency_ms=env.get_float("LEADFLOW_SANDBOX_LATENCY_MS", 0.0, maximum=60_000),
            error_rate=env.get_float("LEADFLOW_SANDBOX_ERROR_RATE", 0.0, maximum=1.0),
            rate_limit_rate=env.get_float("LEADFLOW_SANDBOX_429_RATE", 0.0, maximum=1.0),
            retry_after_s=env.get_float("LEADFLOW_SANDBOX_RETRY_AFTER_S", 1.0, maximum=3600),
            malformed_rate=env.get_float("LEADFLOW_SANDBOX_MALFORMED_RATE", 0.0, maximum=1.0),
            hang_rate=env.get_float("LEADFLOW_SANDBOX_HANG_RATE", 0.0, maximum=1.0),
        ),
        seed=env.get_int("LEADFLOW_SANDBOX_SEED", 7),
    )
