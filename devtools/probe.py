"""`python -m devtools.probe URL`: exit 0 when URL answers 200 (container healthchecks).

Standard library only: a healthcheck starts it every few seconds.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


if __name__ == "__main__":
    sys.exit(0 if len(sys.argv) == 2 and http_ok(sys.argv[1]) else 1)
