"""Free UDP ports on the loopback for the real-peer tests.

Peers only ever bind 127.0.0.1: the tests must not expose anything beyond the
machine, and a fixed address makes Via/Contact values predictable.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable

import psutil

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


def udp_bound_by(pid: int, port: int, kind: str = "udp4") -> bool:
    """True when process `pid` or one of its children holds the loopback's port (UDP
    over IPv4, or `kind` "udp6", "tcp4", "tcp6"): the peer itself, not some other
    process that took the port first."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return any(
            conn.laddr and conn.laddr.port == port
            for p in procs
            for conn in p.net_connections(kind=kind)
        )
    except psutil.Error:
        return False


def wait_udp_bound(
    pid: int, port: int, timeout: float, alive: Callable[[], bool], kind: str = "udp4"
) -> bool:
    """Poll until process `pid` has bound 127.0.0.1:port; False on timeout or as soon
    as `alive()` says the peer died (e.g. because the port was taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_bound_by(pid, port, kind):
            return True
        if not alive():
            return False
        time.sleep(0.01)
    return False


#: How many free ports a peer tries before giving up.
BIND_ATTEMPTS = 5


def start_with_port_retries(
    start: Callable[[], bool], move_to: Callable[[int], None] | None
) -> bool:
    """Start a peer, moving it to another free port while its port was taken.

    free_udp_port() releases the port it found, and another process may bind it
    before the peer does. `start()` returns False only for that (the peer could not
    bind). `move_to(port)` moves the peer to a new port; None when the caller chose
    the port, which is then tried once. Returns what the last start() returned.
    """
    started = start()
    for _ in range(BIND_ATTEMPTS - 1):
        if started or move_to is None:
            break
        move_to(free_udp_port())
        started = start()
    return started
