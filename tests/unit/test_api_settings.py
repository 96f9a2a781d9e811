"""One loader for every named external API (shared/config.py `load_api`): providers and
lead sources read the same variables, checked the same way."""

from __future__ import annotations

import pytest

from services.enricher.config import load_provider
from services.scraper.config import load_source
from shared.config import EnvReader, load_common
from shared.errors import ConfigError

PRODUCTION = {
    "LEADFLOW_ENV": "production",
    "LEADFLOW_DATA_DIR": "/data",
    "LEADFLOW_AMQP_URL": "amqp://lf:pw@mq/",
}


def test_providers_and_sources_read_the_same_variables() -> None:
    env = EnvReader(
        {
            "LEADFLOW_PROVIDER_MY_CO_URL": "https://p.example/api/",
            "LEADFLOW_PROVIDER_MY_CO_TIMEOUT_S": "3",
            "LEADFLOW_PROVIDER_MY_CO_RATE_PER_S": "7",
            "LEADFLOW_PROVIDER_MY_CO_COOLDOWN_S": "9",
            "LEADFLOW_PROVIDER_MY_CO_KEY": "pk",
            "LEADFLOW_SOURCE_MY_CO_URL": "https://s.example",
            "LEADFLOW_SOURCE_MY_CO_TIMEOUT_S": "4",
            "LEADFLOW_SOURCE_MY_CO_RATE_PER_S": "8",
            "LEADFLOW_SOURCE_MY_CO_COOLDOWN_S": "10",
            "LEADFLOW_SOURCE_MY_CO_KEYS": "a, b,",
        }
    )
    common = load_common("enricher", env)
    provider = load_provider(env, common, "my-co")
    source = load_source(env, common, "my-co")
    assert (provider.url, provider.timeout_s, provider.rate_per_s, provider.cooldown_s) == (
        "https://p.example/api",
        3.0,
        7.0,
        9.0,
    )
    assert (provider.keys, provider.key) == (("pk",), "pk")
    assert (source.url, source.timeout_s, source.rate_per_s, source.cooldown_s) == (
        "https://s.example",
        4.0,
        8.0,
        10.0,
    )
    assert source.keys == ("a", "b")


def test_dev_defaults_point_at_the_sandbox() -> None:
    env = EnvReader({"LEADFLOW_SANDBOX_URL": "http://sb:1"})
    common = load_common("enricher", env)
    alpha, hunter = load_provider(env, common, "alpha"), load_provider(env, common, "hunter")
    source = load_source(env, common, "sandbox")
    assert (alpha.url, alpha.key, alpha.timeout_s, alpha.cooldown_s) == (
        "http://sb:1/providers/alpha",
        "sandbox-key",
        10.0,
        30.0,
    )
    assert hunter.url == "http://sb:1/vendors/hunter"
    assert (source.url, source.keys, source.rate_per_s, source.cooldown_s) == (
        "http://sb:1/sources/sandbox",
        ("sandbox-acct-1", "sandbox-acct-2"),
        5.0,
        60.0,
    )


def test_production_needs_urls_and_keys_except_a_vendors_public_url() -> None:
    env = EnvReader(PRODUCTION)
    common = load_common("enricher", env)
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDER_ALPHA_URL"):
        load_provider(env, common, "alpha")
    with pytest.raises(ConfigError, match="LEADFLOW_SOURCE_SANDBOX_URL"):
        load_source(env, common, "sandbox")
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDER_HUNTER_KEY"):
        load_provider(env, common, "hunter")
    keyed = EnvReader({**PRODUCTION, "LEADFLOW_PROVIDER_HUNTER_KEY": "hk"})
    assert load_provider(keyed, common, "hunter").url == "https://api.hunter.io"
    with pytest.raises(ConfigError, match="LEADFLOW_SOURCE_SANDBOX_KEYS"):
        load_source(
            EnvReader({**PRODUCTION, "LEADFLOW_SOURCE_SANDBOX_URL": "https://s.example"}),
            common,
            "sandbox",
        )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LEADFLOW_PROVIDER_ALPHA_TIMEOUT_S", "0", "between 0.1 and 300"),
        ("LEADFLOW_PROVIDER_ALPHA_RATE_PER_S", "200000", "between 0 and 100000"),
        ("LEADFLOW_PROVIDER_ALPHA_COOLDOWN_S", "x", "a number"),
        ("LEADFLOW_PROVIDER_ALPHA_URL", "ftp://x", "http/https URL"),
        ("LEADFLOW_SOURCE_ALPHA_RATE_PER_S", "20000", "between 0 and 10000"),
        ("LEADFLOW_SOURCE_ALPHA_KEYS", " , ", "API keys"),
    ],
)
def test_each_bad_value_names_its_variable(variable: str, value: str, expected: str) -> None:
    env = EnvReader({variable: value})
    common = load_common("enricher", env)
    load = load_provider if "PROVIDER" in variable else load_source
    with pytest.raises(ConfigError) as error:
        load(env, common, "alpha")
    assert str(error.value).startswith(f"{variable}: expected")
    assert expected in str(error.value)


def test_a_provider_takes_one_key_and_the_error_shows_no_key() -> None:
    env = EnvReader({"LEADFLOW_PROVIDER_ALPHA_KEY": "secret-1,secret-2"})
    with pytest.raises(ConfigError, match="LEADFLOW_PROVIDER_ALPHA_KEY") as error:
        load_provider(env, load_common("enricher", env), "alpha")
    assert "secret" not in str(error.value)
