"""Which network addresses a webhook may reach.

A webhook URL is user input: without a guard it could make leadflow POST into the
private network it runs in (SSRF). Targets that are loopback, private, link-local,
multicast or reserved are refused unless their network is listed in
`LEADFLOW_WEBHOOK_ALLOW_NETS`. The gateway checks at submission; the router checks
again at delivery through `GuardedResolver`, since DNS may answer differently later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(ValueError):
    """The URL may not be used as a webhook target; the message says why."""


class NetGuard:
    def __init__(self, allow_nets: Iterable[str]) -> None:
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in allow_nets)

    def check_address(self, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return
        if not ip.is_global or ip.is_multicast:
            raise TargetRefused(
                f"resolves to {ip}, a private/loopback/link-local address; "
                "allow its network in LEADFLOW_WEBHOOK_ALLOW_NETS to use it"
            )

    def check_url_syntax(self, url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise TargetRefused(f"not a valid URL: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise TargetRefused("must be an http or https URL")
        if not parts.hostname:
            raise TargetRefused("must name a host")
        if parts.username or parts.password:
            raise TargetRefused("must not carry credentials; use the destination's secret")
        return parts.hostname, port

    def check_literal_host(self, url: str) -> None:
        """Check a URL whose host is an IP literal (aiohttp skips the resolver for those)."""
        host, _ = self.check_url_syntax(url)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        self.check_address(host)

    async def check_url(self, url: str) -> None:
        """Refuse a URL whose host is, or resolves to, a forbidden address."""
        host, port = self.check_url_syntax(url)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as e:
            raise TargetRefused(f"host {host!r} does not resolve: {e.strerror or e}") from None
        except UnicodeError:
            # IDNA encoding of the name failed (an empty label, one over 63 characters).
            raise TargetRefused(f"host {host!r} is not a valid host name") from None
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
