"""Free UDP ports on the loopback for the real-peer tests.

Peers only ever bind 127.0.0.1: the tests must not expose anything beyond the
machine, and a fixed address makes Via/Contact values predictable.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_udp_port() -> int:
    """Return a UDP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0), so parallel test runs do not collide on
    a hard-coded number. There is a small window before the peer binds it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (metrics
    endpoints, PostgreSQL)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_ports(count: int) -> list[int]:
    """Return `count` distinct free UDP ports (all held open until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def udp_port_in_use(port: int) -> bool:
    """True when something holds 127.0.0.1:port (our bind attempt fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
        return False


def wait_udp_bound(port: int, timeout: float, alive: Callable[[], bool] | None = None) -> bool:
    """Poll until a peer has bound 127.0.0.1:port; False on timeout.

    `alive`, when given, is a callable returning False once the peer process has
    died, so a peer that failed to start is reported at once instead of at timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_port_in_use(port):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.01)
    return False
