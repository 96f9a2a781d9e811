"""`python -m devtools.probe URL`: exit 0 when URL answers 200 (container healthchecks)."""

from __future__ import annotations

import sys

from devtools.stack import http_ok

if __name__ == "__main__":
    sys.exit(0 if len(sys.argv) == 2 and http_ok(sys.argv[1]) else 1)
