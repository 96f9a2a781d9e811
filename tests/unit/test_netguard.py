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


# IPv4 inside IPv6, and deprecated ranges: each of these reaches a private network.
WRAPPED_OR_DEPRECATED = [
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b:1::808:808",  # local-use NAT64 prefix
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible (deprecated)
    "::808:808",  # IPv4-compatible, even of a public address
    "::ffff:0:a9fe:a9fe",  # IPv4-translated
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45
    "2001:0:a00:1::1",  # Teredo, server 10.0.0.1
    "fec0::1",  # site-local (deprecated)
    "3ffe::1",  # 6bone (returned)
    "192.88.99.1",  # 6to4 relay anycast (deprecated)
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::",
    "0.0.0.0",
    "224.0.0.1",
]


@pytest.mark.parametrize("address", WRAPPED_OR_DEPRECATED)
async def test_ipv4_inside_ipv6_and_deprecated_ranges_are_refused(address: str) -> None:
    guard = NetGuard(())
    with pytest.raises(TargetRefused):
        guard.check_address(address)  # a DNS answer, checked by GuardedResolver
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused):
        await guard.check_url(f"http://{literal}/hook")  # at submission
    with pytest.raises(TargetRefused):
        guard.check_literal_host(f"http://{literal}/hook")  # at delivery


@pytest.mark.parametrize(
    "address", ["64:ff9b::808:808", "2002:808:808::1", "2620:fe::fe", "::ffff:8.8.8.8"]
)
def test_public_addresses_stay_reachable_through_their_wrappers(address: str) -> None:
    NetGuard(()).check_address(address)


def test_allowed_networks_are_matched_through_the_wrappers_too() -> None:
    guard = NetGuard(("127.0.0.0/8",))
    guard.check_address("::ffff:127.0.0.1")
    guard.check_address("64:ff9b::7f00:1")
    with pytest.raises(TargetRefused):
        guard.check_address("64:ff9b::a00:1")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # aiohttp (yarl) reads full-width digits as ASCII: this is 127.0.0.1 to it.
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook", "127.0.0.1"),
        ("http://[::ffff:7f00:1]:8080/hook", "127.0.0.1"),
        # Legacy IPv4 forms a socket would read as 127.0.0.1: not an IP to `ipaddress`.
        ("http://2130706433/hook", "not a valid IP address"),
        ("http://127.1/hook", "not a valid IP address"),
        ("http://017.0.0.1/hook", "not a valid IP address"),
    ],
)
async def test_the_host_is_read_as_the_http_client_reads_it(url: str, message: str) -> None:
    guard = NetGuard(())
    with pytest.raises(TargetRefused, match=message):
        guard.check_literal_host(url)
    with pytest.raises(TargetRefused, match=message):
        await guard.check_url(url)


def test_literal_check_leaves_host_names_to_the_resolver() -> None:
    NetGuard(()).check_literal_host("https://hooks.example.com/x")  # no DNS here
    with pytest.raises(TargetRefused, match="port"):
        NetGuard(()).check_literal_host("https://hooks.example.com:0/x")
    with pytest.raises(TargetRefused, match="not a valid URL"):
        NetGuard(()).check_literal_host("http://[::1/x")
