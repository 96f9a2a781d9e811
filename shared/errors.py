"""The error vocabulary every service shares.

Work errors split in two: `PermanentError` (bad data: retrying cannot help) and
`TransientError` (timeouts, 5xx, 429, broker hiccups: retried later with backoff).
A `TransientError` with `later` is the other side saying "not now" (a 429, a cooldown, a
spent rate window, the store locked): nothing about the work itself, so waiting it out
spends none of the work's attempts. The consumer (shared/consumer.py) decides what happens
to a message from which of these it sees.
"""

from __future__ import annotations


class LeadflowError(Exception):
    """Base of every error leadflow raises on purpose."""


class ConfigError(LeadflowError):
    """A setting is missing or malformed; the service must not start."""

    def __init__(self, variable: str, expected: str, got: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: expected {expected}, got {got!r}")


class PermanentError(LeadflowError):
    """The work cannot succeed however often it is retried."""


class TransientError(LeadflowError):
    """The work may succeed later; `retry_after_s` is a hint from the other side."""

    later = False

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BrokerUnavailable(TransientError):
    """The broker cannot take a message right now (down, refused, unconfirmed)."""


class StoreUnavailable(TransientError):
    """The status store cannot be used right now: locked past the busy timeout, disk full
    or failing, the file unreachable. Infrastructure, not bad data: callers wait it out
    (or answer 503) and never spend a message's attempts on it."""

    later = True
