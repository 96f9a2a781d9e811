"""Settings: every bad value names its variable; production refuses dev defaults."""

from __future__ import annotations

import pytest

from services.enricher.config import load_settings as load_enricher
from services.gateway.config import load_settings as load_gateway
from services.router.config import load_settings as load_router
from shared.config import EnvReader, load_common
from shared.errors import ConfigError


def test_dev_defaults_need_no_variables() -> None:
    settings = load_common("router", EnvReader({}))
    assert settings.env == "dev"
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.http_port == 8082
    assert settings.data_dir.name == "var"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LEADFLOW_HTTP_PORT", "abc", "an integer"),
        ("LEADFLOW_HTTP_PORT", "70000", "between 1 and 65535"),
        ("LEADFLOW_AMQP_URL", "redis://localhost", "amqp"),
        ("LEADFLOW_ENV", "prod", "one of"),
        ("LEADFLOW_SHUTDOWN_GRACE_S", "nan", "a number"),
        ("LEADFLOW_BROKER_PREFIX", "a/b", "letters"),
        ("LEADFLOW_METRICS_TENANT_LABELS", "maybe", "true or false"),
    ],
)
def test_malformed_values_name_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_common("router", EnvReader({variable: value}))
    assert str(error.value).startswith(f"{variable}: expected")
    assert expected in str(error.value)


def test_production_refuses_guest_and_missing_keys() -> None:
    prod = {"LEADFLOW_ENV": "production", "LEADFLOW_DATA_DIR": "/data"}
    with pytest.raises(ConfigError, match="LEADFLOW_AMQP_URL"):
        load_common("router", EnvReader(prod))
    with pytest.raises(ConfigError, match="guest"):
        load_common("router", EnvReader({**prod, "LEADFLOW_AMQP_URL": "amqp://guest:guest@mq/"}))
    good = {**prod, "LEADFLOW_AMQP_URL": "amqp://lf:pw@mq/"}
    with pytest.raises(ConfigError, match="LEADFLOW_API_KEYS"):
        load_gateway(EnvReader(good))
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDERS"):
        load_enricher(EnvReader(good))
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDER_ALPHA_URL"):
        load_enricher(EnvReader({**good, "LEADFLOW_PROVIDERS": "alpha"}))


def test_api_keys_map_to_tenants() -> None:
    settings = load_gateway(
        EnvReader({"LEADFLOW_API_KEYS": "acme:key-aaaaaaaa,globex:key-bbbbbbbb"})
    )
    assert sorted(settings.api_keys.values()) == ["acme", "globex"]
    assert "key-aaaaaaaa" not in settings.api_keys  # stored hashed
    for bad in ("acme", "ACME:key-aaaaaaaa", "acme:short", "a:key-aaaaaaaa,b:key-aaaaaaaa"):
        with pytest.raises(ConfigError, match="LEADFLOW_API_KEYS"):
            load_gateway(EnvReader({"LEADFLOW_API_KEYS": bad}))


def test_providers_default_to_the_sandbox_in_dev() -> None:
    settings = load_enricher(EnvReader({"LEADFLOW_SANDBOX_URL": "http://sandbox:9000"}))
    assert [p.name for p in settings.providers] == ["alpha", "beta"]
    assert settings.providers[0].url == "http://sandbox:9000/providers/alpha"


def test_tenant_names_stay_out_of_metric_labels_unless_asked() -> None:
    assert load_common("enricher", EnvReader({})).metrics_tenant_labels is False
    asked = EnvReader({"LEADFLOW_METRICS_TENANT_LABELS": "true"})
    assert load_common("enricher", asked).metrics_tenant_labels is True


def test_dead_letters_are_kept_30_days_by_default() -> None:
    assert load_router(EnvReader({})).dead_letter_retention_days == 30.0
    with pytest.raises(ConfigError, match="LEADFLOW_DEAD_LETTER_RETENTION_DAYS"):
        load_router(EnvReader({"LEADFLOW_DEAD_LETTER_RETENTION_DAYS": "-1"}))


def test_the_provider_cache_keeps_nothing_longer_than_the_control_stream() -> None:
    # A deletion is announced on the control stream, kept 7 days: an entry older than that
    # could outlive the announcement of its job's deletion.
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDER_CACHE_TTL_S"):
        load_enricher(EnvReader({"LEADFLOW_PROVIDER_CACHE_TTL_S": str(8 * 86400)}))
