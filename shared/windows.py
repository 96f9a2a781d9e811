"""An allowance as vendors state it: request windows such as `15/s,500/min` or
`50/min,200/h,600/d` (`_LIMITS`), parsed at start-up with errors naming the variable."""

from __future__ import annotations

import re

import msgspec

from shared.errors import ConfigError

UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_WINDOW = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?")
MAX_WINDOW_LIMIT = 100_000  # a window of N is N slots per key (N rows in the store)
EXPECTED = "comma-separated windows such as 15/s,500/min or 50/min,200/h,600/d"


class Window(msgspec.Struct, frozen=True):
    """At most `limit` requests in any `span_s` seconds."""

    limit: int
    span_s: float

    @property
    def name(self) -> str:
        """How the window is keyed in the store: a changed allowance starts afresh."""
        return f"{self.limit}/{self.span_s:g}s"

    def margin_s(self) -> float:
        # What a request's arrival may lag behind its report of leaving (network, the
        # vendor's own queue): a few hundredths of a second, for any span.
        return 0.02 * min(self.span_s, 1.0) + 0.01


def parse_windows(variable: str, raw: str) -> tuple[Window, ...]:
    """`15/s,500/min` as windows; anything else is a `ConfigError` naming `variable`."""
    windows = []
    for part in (p.strip().lower() for p in raw.split(",")):
        match = _WINDOW.fullmatch(part)
        unit = UNITS.get(match[3]) if match else None
        if match is None or unit is None:
            raise ConfigError(variable, EXPECTED, part or raw)
        limit = int(match[1])
        span_s = float(match[2] or 1) * unit
        if not 1 <= limit <= MAX_WINDOW_LIMIT or span_s <= 0:
            raise ConfigError(
                variable, f"a limit between 1 and {MAX_WINDOW_LIMIT} per a positive span", part
            )
        windows.append(Window(limit, span_s))
    return tuple(sorted(set(windows), key=lambda w: w.span_s))


def rate_window(rate_per_s: float) -> tuple[Window, ...]:
    """The older `_RATE_PER_S` (may be fractional) as a window: 2.5/s is 2 per 0.8 s."""
    if rate_per_s <= 0:
        return ()
    limit = max(1, int(rate_per_s))
    return (Window(limit, limit / rate_per_s),)
