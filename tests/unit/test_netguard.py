"""Webhook targets: private networks refused unless allowed."""

from __future__ import annotations

import pytest

from shared.netguard import NetGuard, TargetRefused


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.5", "192.168.1.1", "169.254.169.254", "::1", "::ffff:10.0.0.1"]
)
def test_private_addresses_are_refused(address: str) -> None:
    with pytest.raises(TargetRefused):
        NetGuard(()).check_address(address)


def test_allowed_networks_pass() -> None:
    NetGuard(("127.0.0.0/8",)).check_address("127.0.0.1")
    NetGuard(()).check_address("93.184.216.34")


async def test_urls_are_checked_by_scheme_credentials_and_resolution() -> None:
    guard = NetGuard(("127.0.0.0/8",))
    await guard.check_url("http://127.0.0.1:9/hook")
    for url in ("ftp://example.com", "http://user:pw@example.com/", "http:///nohost"):
        with pytest.raises(TargetRefused):
            await guard.check_url(url)
    with pytest.raises(TargetRefused):
        await NetGuard(()).check_url("http://localhost/hook")


@pytest.mark.parametrize("host", ["a" * 64 + ".example.com", "a..example.com"])
async def test_host_names_that_cannot_be_encoded_are_refused(host: str) -> None:
    # The resolver's IDNA encoding raises UnicodeError (not OSError) for these.
    with pytest.raises(TargetRefused, match="not a valid host name"):
        await NetGuard(()).check_url(f"http://{host}/hook")
