"""Settings read from `LEADFLOW_*` environment variables, validated once at start-up.

Only this module reads the environment. Each service builds its own frozen settings
struct with an `EnvReader` and receives it as a parameter everywhere else. A missing or
malformed value raises `ConfigError` whose message names the variable and what is expected;
the service's `__main__` turns that into a one-line exit.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

from shared.errors import ConfigError
from shared.topology import QueueType
from shared.windows import Window, parse_windows, rate_window

T = TypeVar("T")

Env = Literal["dev", "production"]
LogFormat = Literal["json", "console"]

DEV_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEV_SANDBOX_URL = "http://127.0.0.1:8090"
DEFAULT_PORTS = {
    "gateway": 8080,
    "enricher": 8081,
    "router": 8082,
    "scraper": 8083,
    "sandbox": 8090,
}


class EnvReader:
    """Typed access to `LEADFLOW_*` variables; every error names the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def is_set(self, name: str) -> bool:
        return self.raw(name) is not None

    def get_str(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def choice(self, name: str, default: T, choices: tuple[T, ...]) -> T:
        value = self.raw(name)
        if value is None:
            return default
        for choice in choices:
            if value == choice:
                return choice
        raise ConfigError(name, f"one of {', '.join(map(repr, choices))}", value)

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, "true or false", value)

    def get_int(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, "an integer", value) from None
        _check_range(name, number, value, "an integer", minimum, maximum)
        return number

    def get_float(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, "a number", value) from None
        if number != number:  # NaN passes every range check
            raise ConfigError(name, "a number", value)
        _check_range(name, number, value, "a number", minimum, maximum)
        return number

    def url(self, name: str, default: str, *, schemes: tuple[str, ...]) -> str:
        return _checked_url(name, self.get_str(name, default), schemes)

    def urls(self, name: str, default: str, *, schemes: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated full URLs (a cluster's nodes), each checked like `url`."""
        items = [part.strip() for part in self.get_str(name, default).split(",")]
        if not all(items):
            raise ConfigError(name, "comma-separated URLs, none empty", self.get_str(name, default))
        return tuple(_checked_url(name, item, schemes) for item in items)

    def networks(self, name: str, default: str) -> tuple[str, ...]:
        value = self.get_str(name, default)
        nets = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                nets.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ConfigError(name, "comma-separated CIDRs such as 10.0.0.0/8", item) from None
        return tuple(nets)

    def names(self, name: str, default: str) -> tuple[str, ...]:
        value = self.get_str(name, default)
        items = tuple(filter(None, (part.strip() for part in value.split(","))))
        for item in items:
            if not item.replace("_", "").replace("-", "").isalnum():
                raise ConfigError(name, "comma-separated names of letters, digits, - and _", item)
        return items


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service needs: where the broker and the data live, and how to log."""

    service: str
    env: Env
    # The broker's nodes: a cluster's, in the order to try (one for a single node).
    amqp_urls: tuple[str, ...]
    # Queues that hold work: quorum (replicated; any cluster) or classic (a single node
    # whose queues an older leadflow declared classic; see shared/topology.py).
    queue_type: QueueType
    data_dir: Path
    # Where the store lives: `sqlite:///<path>` (default: leadflow.db in the data dir) or
    # `postgresql://…` (several machines; see shared/store.py).
    store_url: str
    # CSV exports, <exports_dir>/<tenant>/<name>.csv: a directory every router shares
    # (a network file system when routers run on several machines).
    exports_dir: Path
    http_host: str
    http_port: int
    broker_prefix: str
    log_format: LogFormat
    log_level: str
    shutdown_grace_s: float
    # Tenant names are customer data: metric labels (queue names of lanes) name no tenant
    # unless this is on (shared/labels.py).
    metrics_tenant_labels: bool

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def amqp_url(self) -> str:
        return self.amqp_urls[0]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "leadflow.db"


def load_common(service: str, env: EnvReader) -> CommonSettings:
    mode: Env = env.choice("LEADFLOW_ENV", "dev", ("dev", "production"))
    if mode == "production":
        _require(env, "LEADFLOW_AMQP_URL", "an explicit broker URL in production")
        _require(env, "LEADFLOW_DATA_DIR", "an explicit data directory in production")
    amqp_urls = env.urls("LEADFLOW_AMQP_URL", DEV_AMQP_URL, schemes=("amqp", "amqps"))
    if mode == "production" and any(urlsplit(u).username in (None, "guest") for u in amqp_urls):
        raise ConfigError(
            "LEADFLOW_AMQP_URL", "credentials other than guest in production", "guest"
        )
    prefix = env.get_str("LEADFLOW_BROKER_PREFIX", "leadflow")
    if not prefix.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError("LEADFLOW_BROKER_PREFIX", "letters, digits, '.', '-' and '_'", prefix)
    default_format: LogFormat = "console" if sys.stderr.isatty() else "json"
    data_dir = Path(env.get_str("LEADFLOW_DATA_DIR", "./var")).resolve()
    store_url = env.get_str("LEADFLOW_STORE_URL", f"sqlite:///{data_dir / 'leadflow.db'}")
    if not store_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError("LEADFLOW_STORE_URL", "a sqlite:///path or postgresql://… URL", store_url)
    return CommonSettings(
        service=service,
        env=mode,
        amqp_urls=amqp_urls,
        queue_type=env.choice("LEADFLOW_QUEUE_TYPE", "quorum", ("quorum", "classic")),
        data_dir=data_dir,
        store_url=store_url,
        exports_dir=Path(env.get_str("LEADFLOW_EXPORTS_DIR", str(data_dir / "exports"))).resolve(),
        http_host=env.get_str("LEADFLOW_HTTP_HOST", "127.0.0.1"),
        http_port=env.get_int(
            "LEADFLOW_HTTP_PORT", DEFAULT_PORTS[service], minimum=1, maximum=65535
        ),
        broker_prefix=prefix,
        log_format=env.choice("LEADFLOW_LOG_FORMAT", default_format, ("json", "console")),
        log_level=env.choice("LEADFLOW_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
        shutdown_grace_s=env.get_float("LEADFLOW_SHUTDOWN_GRACE_S", 20.0, maximum=600.0),
        metrics_tenant_labels=env.get_bool("LEADFLOW_METRICS_TENANT_LABELS", False),
    )


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every task worker (enricher, scraper) is tuned with."""

    concurrency: int  # tasks handled at once by one worker
    tenant_concurrency: int  # of which at most this many of one tenant
    max_attempts: int
    retry_base_s: float
    retry_max_s: float


def load_worker(env: EnvReader, concurrency_var: str, default_concurrency: int) -> WorkerSettings:
    concurrency = env.get_int(concurrency_var, default_concurrency, minimum=1, maximum=1000)
    return WorkerSettings(
        concurrency=concurrency,
        tenant_concurrency=env.get_int(
            "LEADFLOW_TENANT_CONCURRENCY", concurrency, minimum=1, maximum=1000
        ),
        max_attempts=env.get_int("LEADFLOW_MAX_ATTEMPTS", 5, minimum=1, maximum=100),
        retry_base_s=env.get_float("LEADFLOW_RETRY_BASE_S", 1.0, minimum=0.0, maximum=3600),
        retry_max_s=env.get_float("LEADFLOW_RETRY_MAX_S", 600.0, minimum=0.0, maximum=86400),
    )


def sandbox_url(env: EnvReader) -> str:
    return env.url("LEADFLOW_SANDBOX_URL", DEV_SANDBOX_URL, schemes=("http", "https"))


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A named external HTTP API leadflow calls: an enrichment provider, a lead source.

    Each service subclasses it with what its kind of API adds (concurrency, page size...)
    and loads it with `load_api`, so every such API is configured alike.
    """

    name: str
    url: str
    keys: tuple[str, ...]  # one per account, each with its own allowance
    timeout_s: float
    rate_per_s: float  # requests a second per key; 0: no limit (folded into `limits`)
    cooldown_s: float  # after a 429 without Retry-After
    # Each key's allowance (`_LIMITS`, and `_RATE_PER_S` as a window): shared/limits.py.
    limits: tuple[Window, ...] = ()


@dataclass(frozen=True)
class ApiKind:
    """A kind of external API: its variables (`LEADFLOW_<prefix>_<NAME>_...`) and defaults."""

    prefix: str
    what: str  # "provider", "source": how error messages name it
    keys_var: str  # `KEYS`: the suffix of the variable holding the API keys (`KEY` also read)
    max_keys: int | None  # None: any number, comma-separated
    dev_keys: str  # the sandbox's; `{name}` is the API's name
    timeout_s: float
    rate_per_s: float
    max_rate_per_s: float
    cooldown_s: float

    def var(self, name: str) -> str:
        """The variables' common stem for the API `name` (`LEADFLOW_PROVIDER_ALPHA`)."""
        return f"LEADFLOW_{self.prefix}_{name.upper().replace('-', '_')}"


A = TypeVar("A", bound=ApiSettings)


def load_api(
    env: EnvReader,
    common: CommonSettings,
    api: ApiKind,
    cls: type[A],
    name: str,
    /,
    *,
    dev_url: str,
    public_url: str | None = None,
    **own: Any,
) -> A:
    """The API `name` as `cls`: `_URL`, the keys, `_TIMEOUT_S`, `_RATE_PER_S`, `_LIMITS` and
    `_COOLDOWN_S` read here, the fields of its own kind given as `own`. Unset, the URL and
    keys are the sandbox's in dev; in production the keys must be set, and so must the URL
    unless the API has a public one (`public_url`, a vendor's)."""
    var = api.var(name)
    if public_url is None:
        require_in_production(env, common, f"{var}_URL", f"the {api.what}'s API URL")
    rate_per_s = env.get_float(f"{var}_RATE_PER_S", api.rate_per_s, maximum=api.max_rate_per_s)
    return cls(
        name=name,
        url=env.url(
            f"{var}_URL",
            public_url if common.is_production and public_url else dev_url,
            schemes=("http", "https"),
        ),
        keys=_api_keys(env, common, api, f"{var}_{api.keys_var}", name),
        timeout_s=env.get_float(f"{var}_TIMEOUT_S", api.timeout_s, minimum=0.1, maximum=300),
        rate_per_s=rate_per_s,
        cooldown_s=env.get_float(f"{var}_COOLDOWN_S", api.cooldown_s, minimum=0.1, maximum=86_400),
        limits=load_limits(env, f"{var}_LIMITS", rate_per_s),
        **own,
    )


def load_limits(env: EnvReader, var: str, rate_per_s: float) -> tuple[Window, ...]:
    """Each key's windows: `_LIMITS` (`15/s,500/min`), plus `_RATE_PER_S` when set."""
    raw = env.raw(var)
    windows = parse_windows(var, raw) if raw is not None else ()
    return tuple(sorted({*windows, *rate_window(rate_per_s)}, key=lambda w: w.span_s))


def _api_keys(
    env: EnvReader, common: CommonSettings, kind: ApiKind, var: str, name: str
) -> tuple[str, ...]:
    many = kind.max_keys is None or kind.max_keys > 1
    expected = f"the {kind.what}'s API key{'s, comma-separated' if many else ''}"
    # `_KEY` (one key) is read where `_KEYS` is not set; both at once is ambiguous.
    single = var.removesuffix("S") if var.endswith("_KEYS") else None
    limit = kind.max_keys
    if single is not None and env.is_set(single):
        if env.is_set(var):
            raise ConfigError(single, f"either {single} or {var}, not both", "both set")
        var, limit, expected = single, 1, f"one API key (a pool goes in {var})"
    require_in_production(env, common, var, expected)
    raw = env.get_str(var, kind.dev_keys.format(name=name))
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys or (limit is not None and len(keys) > limit):
        raise ConfigError(var, expected, f"{len(keys)} keys")  # never the keys themselves
    return keys


def webhook_allow_nets(env: EnvReader, common: CommonSettings) -> tuple[str, ...]:
    """Networks webhooks may reach although private; loopback only in dev, none in production."""
    default = "" if common.is_production else "127.0.0.0/8,::1/128"
    return env.networks("LEADFLOW_WEBHOOK_ALLOW_NETS", default)


def _checked_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(name, f"a {'/'.join(schemes)} URL with a host", value)
    try:
        parts.port  # noqa: B018 - a bad port only raises when read
    except ValueError:
        raise ConfigError(name, "a URL with a valid port", value) from None
    return value.rstrip("/") if parts.scheme.startswith("http") else value


def _check_range(
    name: str, number: float, raw: str, what: str, minimum: float, maximum: float | None
) -> None:
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f">= {minimum:g}" if maximum is None else f"between {minimum:g} and {maximum:g}"
        raise ConfigError(name, f"{what} {bounds}", raw)


def require_in_production(env: EnvReader, common: CommonSettings, name: str, expected: str) -> None:
    """In production a dev default is no answer: `name` must be set."""
    if common.is_production:
        _require(env, name, expected)


def _require(env: EnvReader, name: str, expected: str) -> None:
    if not env.is_set(name):
        raise ConfigError(name, expected, "<unset>")
