"""What can go wrong, as exceptions that carry the exit code and the message to show.

Exit codes: 0 done; 1 the followed job ended failed, cancelled or timed out; 2 a user
mistake (bad arguments, unreadable lead file, a 4xx answer); 3 the gateway is unreachable
or failed (connection error, timeout, 5xx, an answer that is not what the API promises).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_JOB_UNSUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_SERVER = 3


class CliError(Exception):
    """An error shown as `leadflow: error: <message>` (plus `details` lines)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class UsageError(CliError):
    exit_code = EXIT_USAGE


class ServerError(CliError):
    exit_code = EXIT_SERVER
