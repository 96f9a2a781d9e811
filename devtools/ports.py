"""Free local ports for the stacks tests and benchmarks start."""

from __future__ import annotations

import socket

# Every port free_port handed out in this process: the kernel may give one free port to two
# binds in a row, and two services of one stack given the same port start as one: the second
# cannot bind, and the first answers the readiness probe meant for it (a 404 later).
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now that this process has not handed out before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
