"""API keys: their length in production, and failed-auth throttling per client address."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from services.gateway.auth import FailureThrottle, auth_middleware, client_address, setup_auth
from services.gateway.config import AuthThrottle, load_settings
from services.gateway.keys import METRICS, SETTINGS, tenant_of
from services.gateway.problems import problem_middleware
from shared.config import EnvReader
from shared.errors import ConfigError
from shared.health import Metrics

PRODUCTION = {
    "LEADFLOW_ENV": "production",
    "LEADFLOW_DATA_DIR": "/data",
    "LEADFLOW_AMQP_URL": "amqp://lf:pw@mq/",
}
GOOD_KEY = "acme-key-0001"
GOOD = {"Authorization": f"Bearer {GOOD_KEY}"}
WRONG = {"Authorization": "Bearer not-a-key-at-all"}


@pytest.mark.parametrize("key", ["s" * 8, "0123456789abcdef0123456789abcde"])  # 8, 31 chars
def test_production_refuses_keys_shorter_than_32_characters(key: str) -> None:
    env = {**PRODUCTION, "LEADFLOW_API_KEYS": f"ok:{'k' * 40},acme:{key}"}
    with pytest.raises(ConfigError) as error:
        load_settings(EnvReader(env))
    message = str(error.value)
    assert message.startswith("LEADFLOW_API_KEYS: expected")
    assert "32+ characters in production" in message
    assert "acme:…" in message
    assert key not in message, "the key must never be echoed"
    assert "\n" not in message


def test_a_32_character_key_is_accepted_in_production() -> None:
    env = {
        **PRODUCTION,
        "LEADFLOW_API_KEYS": "acme:" + "k" * 32,
        "LEADFLOW_SECRET_KEY": Fernet.generate_key().decode(),
    }
    assert list(load_settings(EnvReader(env)).api_keys.values()) == ["acme"]


def test_dev_keeps_accepting_8_characters_and_never_echoes_a_bare_key() -> None:
    assert list(load_settings(EnvReader({"LEADFLOW_API_KEYS": "acme:12345678"})).api_keys)
    with pytest.raises(ConfigError) as error:
        load_settings(EnvReader({"LEADFLOW_API_KEYS": "a-bare-secret-key-with-no-tenant"}))
    assert "a-bare-secret" not in str(error.value)


def test_throttle_settings_are_read_and_checked() -> None:
    settings = load_settings(
        EnvReader(
            {
                "LEADFLOW_AUTH_MAX_FAILURES": "5",
                "LEADFLOW_AUTH_FAILURE_WINDOW_S": "30",
                "LEADFLOW_AUTH_TRACKED_ADDRESSES": "100",
                "LEADFLOW_AUTH_TRUSTED_PROXIES": "10.0.0.1",
            }
        )
    )
    assert settings.auth_throttle == AuthThrottle(
        max_failures=5, window_s=30.0, tracked_addresses=100, trusted_proxies=("10.0.0.1/32",)
    )
    assert load_settings(EnvReader({})).auth_throttle == AuthThrottle()
    for name, bad in [
        ("LEADFLOW_AUTH_MAX_FAILURES", "-1"),
        ("LEADFLOW_AUTH_FAILURE_WINDOW_S", "0"),
        ("LEADFLOW_AUTH_TRACKED_ADDRESSES", "0"),
        ("LEADFLOW_AUTH_TRUSTED_PROXIES", "proxy"),
        ("LEADFLOW_SSE_MAX_STREAMS", "0"),
        ("LEADFLOW_SSE_MAX_STREAMS_PER_TENANT", "x"),
        ("LEADFLOW_SSE_MAX_LIFETIME_S", "0.1"),
    ]:
        with pytest.raises(ConfigError, match=f"^{name}: expected"):
            load_settings(EnvReader({name: bad}))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_counts_failures_per_address_in_a_sliding_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(AuthThrottle(max_failures=3, window_s=60.0), clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
        clock.now += 10
    assert throttle.retry_after_s("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    # The first failure (at 1000) leaves the window at 1060; now is 1020.
    assert throttle.retry_after_s("10.0.0.1") == pytest.approx(40.0)
    assert throttle.retry_after_s("10.0.0.2") == 0
    clock.now += 40
    assert throttle.retry_after_s("10.0.0.1") == 0
    throttle.failed("10.0.0.1")  # one more guess, and the window is full again
    assert throttle.retry_after_s("10.0.0.1") == pytest.approx(10.0)


def test_throttle_tracks_a_bounded_number_of_addresses() -> None:
    clock = Clock()
    throttle = FailureThrottle(AuthThrottle(max_failures=2, tracked_addresses=3), clock)
    for address in ("a", "a", "b", "c"):
        throttle.failed(address)
    throttle.failed("b")  # b is now the most recently failing
    for n in range(100):
        throttle.failed(f"spray-{n}")
    assert throttle.tracked == 3
    assert throttle.retry_after_s("a") == 0  # forgotten, least recently failing first


def test_throttle_off_with_zero_failures() -> None:
    throttle = FailureThrottle(AuthThrottle(max_failures=0))
    for _ in range(10):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 0
    assert throttle.tracked == 0


async def make_client(env: dict[str, str]) -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[problem_middleware, auth_middleware])
    app[SETTINGS] = load_settings(EnvReader({"LEADFLOW_API_KEYS": f"acme:{GOOD_KEY}", **env}))
    app[METRICS] = Metrics()
    setup_auth(app)

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"tenant": tenant_of(request)})

    app.router.add_get("/v1/whoami", whoami)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = await make_client(
        {"LEADFLOW_AUTH_MAX_FAILURES": "3", "LEADFLOW_AUTH_TRUSTED_PROXIES": "127.0.0.1"}
    )
    yield client
    await client.close()


async def status(
    client: TestClient[web.Request, web.Application], headers: dict[str, str], via: str
) -> int:
    # The test server sees 127.0.0.1, a trusted proxy here: X-Forwarded-For is the client.
    async with client.get("/v1/whoami", headers={**headers, "X-Forwarded-For": via}) as response:
        return response.status


async def test_too_many_wrong_keys_from_one_address_answer_429_without_checking_the_key(
    client: TestClient[web.Request, web.Application],
) -> None:
    for _ in range(10):
        assert await status(client, GOOD, "198.51.100.7") == 200  # successes count for nothing
    assert await status(client, {}, "198.51.100.7") == 401  # no key: no guess, not counted
    for _ in range(3):
        assert await status(client, WRONG, "198.51.100.7") == 401

    async with client.get(
        "/v1/whoami", headers={**GOOD, "X-Forwarded-For": "198.51.100.7"}
    ) as response:
        assert response.status == 429
        assert response.content_type == "application/problem+json"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        problem = await response.json(content_type=None)
    assert problem["type"].endswith("/auth-throttled")
    assert problem["status"] == 429
    assert "wrong API key" in problem["detail"]

    assert await status(client, GOOD, "203.0.113.9") == 200  # another address is unaffected
    assert await status(client, WRONG, "203.0.113.9") == 401
    assert client.app is not None
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("leadflow_gateway_auth_throttled_total") == 1


async def test_a_forged_forwarded_for_does_not_escape_the_throttle() -> None:
    client = await make_client({"LEADFLOW_AUTH_MAX_FAILURES": "2"})  # no trusted proxy
    try:
        for n in range(2):
            assert await status(client, WRONG, f"192.0.2.{n}") == 401
        assert await status(client, GOOD, "192.0.2.99") == 429
    finally:
        await client.close()


def test_client_address_reads_forwarded_for_only_behind_a_trusted_proxy() -> None:
    from aiohttp.test_utils import make_mocked_request

    def request(forwarded: str) -> web.Request:
        req = make_mocked_request("GET", "/", headers={"X-Forwarded-For": forwarded})
        return req.clone(remote="10.0.0.5")

    trusted = ("10.0.0.0/24",)
    assert client_address(request("1.2.3.4"), ()) == "10.0.0.5"
    assert client_address(request("1.2.3.4"), trusted) == "1.2.3.4"
    # The client wrote the left part; the proxy appended the true hop on the right.
    assert client_address(request("6.6.6.6, 1.2.3.4"), trusted) == "1.2.3.4"
    assert client_address(request("1.2.3.4, 10.0.0.7"), trusted) == "1.2.3.4"
    assert client_address(request(""), trusted) == "10.0.0.5"
