"""API-key auth: `Authorization: Bearer <key>` names the tenant a request acts for.

Keys are compared by their SHA-256, so the lookup runs in constant time in what matters:
timing can at most tell how much of a *digest* matched, which says nothing about the key.
With auth off (dev, no keys configured) every request is the `default` tenant.

Failed-auth throttling: a client address that presented `LEADFLOW_AUTH_MAX_FAILURES` wrong
keys within `LEADFLOW_AUTH_FAILURE_WINDOW_S` is answered 429 with `Retry-After`, without
its key being looked at, until the oldest of those failures leaves the window (a sliding
window: at most that many guesses per window and address). A request without credentials
guesses nothing and is not counted. A success does not clear the count: one valid key must
not buy an address fresh guesses at other tenants' keys. Memory is bounded: at most
`LEADFLOW_AUTH_TRACKED_ADDRESSES` addresses are tracked, the least recently failing dropped
first. Behind a reverse proxy, list it in `LEADFLOW_AUTH_TRUSTED_PROXIES` so the client's
address is taken from `X-Forwarded-For` (otherwise every client shares the proxy's).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web
from prometheus_client import Counter

from services.gateway.config import DEV_TENANT, AuthThrottle, key_digest
from services.gateway.keys import METRICS, SETTINGS, TENANT
from services.gateway.problems import PROBLEM_BASE, Handler, Problem
from shared.logging import get_logger

log = get_logger(__name__)


class FailureThrottle:
    """Wrong-key attempts per client address, in a sliding window, for a bounded set of
    addresses."""

    def __init__(self, settings: AuthThrottle, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        # address -> times of its latest failures (at most max_failures), least recent first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.settings.max_failures > 0

    @property
    def tracked(self) -> int:
        return len(self._failures)

    def retry_after_s(self, address: str) -> float:
        """Seconds until `address` may try a key again; 0 when it may now."""
        times = self._failures.get(address)
        if not self.enabled or times is None or len(times) < self.settings.max_failures:
            return 0.0
        return max(0.0, times[0] + self.settings.window_s - self._clock())

    def failed(self, address: str) -> None:
        if not self.enabled:
            return
        times = self._failures.pop(address, None)
        if times is None:
            times = deque(maxlen=self.settings.max_failures)
            while len(self._failures) >= self.settings.tracked_addresses:
                self._failures.popitem(last=False)
        times.append(self._clock())
        self._failures[address] = times  # re-inserted: now the most recently failing


THROTTLE = web.AppKey("auth_throttle", FailureThrottle)
THROTTLED = web.AppKey("auth_throttled_total", Counter)


def setup_auth(app: web.Application) -> None:
    """Keep the failed-auth throttle on the app (call after the settings and metrics are set)."""
    app[THROTTLE] = FailureThrottle(app[SETTINGS].auth_throttle)
    app[THROTTLED] = Counter(
        "leadflow_gateway_auth_throttled",
        "Requests answered 429 because their address sent too many wrong API keys.",
        registry=app[METRICS].registry,
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    settings = request.app[SETTINGS]
    if not settings.auth_enabled:
        request[TENANT] = DEV_TENANT
        return await handler(request)
    throttle = request.app[THROTTLE]
    address = client_address(request, throttle.settings.trusted_proxies)
    wait_s = throttle.retry_after_s(address)
    if wait_s > 0:
        request.app[THROTTLED].inc()
        raise throttled(wait_s)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    tenant = settings.api_keys.get(key_digest(key)) if scheme.lower() == "bearer" else None
    if tenant is None:
        if key:
            throttle.failed(address)
            log.info("auth.failed", address=address, path=request.path)
        raise Problem(
            401,
            "send `Authorization: Bearer <api key>` with a key from LEADFLOW_API_KEYS",
            headers={"WWW-Authenticate": 'Bearer realm="leadflow"'},
        )
    request[TENANT] = tenant
    return await handler(request)


def throttled(wait_s: float) -> Problem:
    seconds = max(1, math.ceil(wait_s))
    return Problem(
        429,
        f"too many requests with a wrong API key from this address; retry after {seconds} s",
        headers={"Retry-After": str(seconds)},
        extra={"type": PROBLEM_BASE + "auth-throttled", "title": "Too many failed attempts"},
    )


def client_address(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The peer's address; behind a trusted proxy, the nearest untrusted X-Forwarded-For hop."""
    peer = request.remote or "unknown"
    if not trusted_proxies or not _in_networks(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    # Read from the right: hops a trusted proxy appended are true, anything left of the
    # first untrusted one was written by the client and may be forged.
    for hop in reversed(hops):
        if hop and not _in_networks(hop, trusted_proxies):
            return hop
    return peer


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net) for net in networks)
