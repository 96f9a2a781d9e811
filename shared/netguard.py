"""Which network addresses a webhook (or alert) may reach.

A webhook URL is user input: without a guard it could make leadflow POST into the
private network it runs in (SSRF). Targets that are loopback, private, link-local,
multicast, reserved or deprecated are refused unless their network is listed in
`LEADFLOW_WEBHOOK_ALLOW_NETS`. The gateway checks at submission; the router checks
again at delivery, through `GuardedResolver` for names (DNS may answer differently
later) and `check_literal_host` for IP literals (aiohttp does not resolve those).

Two rules keep the checks honest:
- The host is read exactly as the HTTP client reads it: `yarl.URL(url).raw_host`, the
  host aiohttp connects to (IDNA-encoded, so full-width digits are already ASCII), and
  aiohttp's own test for "this host is an IP literal". A host aiohttp takes for an IP
  literal must then be one `ipaddress` parses, or it is refused: legacy forms such as
  `2130706433` or `127.1` never reach a socket that would read them as 127.0.0.1.
- An IPv6 address that carries an IPv4 address is judged by the IPv4 address it
  carries (IPv4-mapped and -translated, NAT64 `64:ff9b::/96`, 6to4, Teredo);
  deprecated ranges (site-local `fec0::/10`, IPv4-compatible `::/96`, the 6bone, the
  6to4 relay anycast) and the local-use NAT64 prefix are refused outright.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_net = ipaddress.ip_network

GLOBAL_UNICAST = _net("2000::/3")
# The IPv4 address is the last 32 bits (RFC 4291, RFC 2765, RFC 6052 with a /96 prefix).
LAST_32_BITS_CARRY_IPV4 = (_net("::ffff:0:0:0/96"), _net("64:ff9b::/96"))
REFUSED_NETWORKS: tuple[tuple[Network, str], ...] = (
    (_net("::/96"), "an IPv4-compatible IPv6 address (deprecated)"),
    (_net("fec0::/10"), "a site-local IPv6 address (deprecated)"),
    (_net("3ffe::/16"), "a 6bone IPv6 address (deprecated)"),
    (_net("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_net("192.88.99.0/24"), "a 6to4 relay anycast address (deprecated)"),
)


class TargetRefused(ValueError):
    """The URL may not be used as a webhook target; the message says why."""


@dataclass(frozen=True)
class Target:
    host: str  # as aiohttp connects to it (IDNA-encoded)
    port: int
    ip: IPAddress | None  # the host is an IP literal: aiohttp will not resolve it


def parse_target(url: str) -> Target:
    """The URL's host and port as aiohttp will use them, or why it may not be used."""
    try:
        parsed = yarl.URL(url)
        port = parsed.port
        host = parsed.raw_host
    except (ValueError, TypeError) as e:
        raise TargetRefused(f"not a valid URL: {e}") from None
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("must be an http or https URL")
    if not host:
        raise TargetRefused("must name a host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise TargetRefused("must not carry credentials; use the destination's secret")
    if not port:
        raise TargetRefused("must use a port from 1 to 65535")
    if not is_ip_address(host):
        return Target(host, port, None)
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # without an IPv6 zone
    except ValueError:
        raise TargetRefused(f"host {host!r} is not a valid IP address") from None
    return Target(host, port, ip)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (and so reaches), if any."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if any(ip in net for net in LAST_32_BITS_CARRY_IPV4):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF),)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client)
    return ()


class NetGuard:
    def __init__(self, allow_nets: Iterable[str]) -> None:
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in allow_nets)

    def check_address(self, address: str) -> None:
        """Refuse a resolved address (a string as getaddrinfo gives it)."""
        self.check_ip(ipaddress.ip_address(address.split("%", 1)[0]), resolved=True)

    def check_ip(self, ip: IPAddress, *, resolved: bool = False) -> None:
        if self._allowed(ip):
            return
        reason = self.refusal(ip)
        if reason is not None:
            verb = "resolves to" if resolved else "is"
            raise TargetRefused(
                f"{verb} {ip}, {reason}; allow its network in LEADFLOW_WEBHOOK_ALLOW_NETS to use it"
            )

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` may not be reached (None: it may)."""
        if ip.is_loopback or ip.is_unspecified:
            return "a loopback/unspecified address"
        for net, why in REFUSED_NETWORKS:
            if ip.version == net.version and ip in net:
                return why
        if isinstance(ip, ipaddress.IPv4Address):
            if not ip.is_global or ip.is_multicast:
                return "a private/loopback/link-local/reserved address"
            return None
        carried = embedded_ipv4(ip)
        for inner in carried:
            if not self._allowed(inner) and (inner_why := self.refusal(inner)) is not None:
                return f"an IPv6 address that carries {inner}, {inner_why}"
        if carried:
            return None
        if ip not in GLOBAL_UNICAST or not ip.is_global:
            return "a private/link-local/reserved IPv6 address"
        return None

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed)

    def check_literal_host(self, url: str) -> None:
        """Check a URL whose host is an IP literal (aiohttp skips the resolver for those);
        a host name is left to `GuardedResolver` at connection time."""
        target = parse_target(url)
        if target.ip is not None:
            self.check_ip(target.ip)

    async def check_url(self, url: str) -> None:
        """Refuse a URL whose host is, or resolves to, a forbidden address."""
        target = parse_target(url)
        if target.ip is not None:
            self.check_ip(target.ip)
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM
            )
        except OSError as e:
            raise TargetRefused(
                f"host {target.host!r} does not resolve: {e.strerror or e}"
            ) from None
        except UnicodeError:
            # IDNA encoding of the name failed (an empty label, one over 63 characters).
            raise TargetRefused(f"host {target.host!r} is not a valid host name") from None
        for info in infos:
            self.check_address(str(info[4][0]))


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses forbidden addresses at connection time."""

    def __init__(self, guard: NetGuard) -> None:
        self._guard = guard
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                self._guard.check_address(result["host"])
            except TargetRefused as e:
                raise OSError(f"webhook target {host} {e}") from None
        return results

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return f"GuardedResolver(allowed={self._guard.allowed!r})"
