"""systemd's watchdog: the supervisor pings only while every shard answers.

The service runs with NOTIFY_SOCKET pointing at a datagram socket of the
test and WATCHDOG_USEC set, as systemd would start it with ``WatchdogSec=``.
A shard stopped with SIGSTOP cannot answer the supervisor's pings; the
supervisor must then let the watchdog period run out (so systemd restarts a
service that hangs), and ping again once the shard is continued.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.ops_service import OpsService
from tests.e2e.service import wait_for as wait_until

WATCHDOG_USEC = 600_000
"""A 0.6 s watchdog period: the supervisor pings every 0.2 s while healthy."""
PERIOD = WATCHDOG_USEC / 1_000_000


class NotifyListener:
    """The systemd end of sd_notify: a datagram socket that keeps what arrives, with times."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.received: list[tuple[float, str]] = []

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            now = time.monotonic()
            self.received.extend((now, line) for line in data.decode().split("\n"))

    def pings_since(self, since: float) -> list[float]:
        self.drain()
        return [t for t, line in self.received if line == "WATCHDOG=1" and t >= since]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def watched() -> Iterator[tuple[OpsService, NotifyListener]]:
    service = OpsService(shards=2)
    listener = NotifyListener(str(service.workdir / "notify.sock"))
    service.env.update(NOTIFY_SOCKET=listener.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    service.env.pop("WATCHDOG_PID", None)
    try:
        service.start()
        yield service, listener
    finally:
        service.close()  # SIGKILL to the whole group reaches a stopped shard too
        listener.close()


def test_watchdog_pings_stop_while_a_shard_is_stopped_and_resume_after(
    watched: tuple[OpsService, NotifyListener],
) -> None:
    service, listener = watched
    started = time.monotonic()
    wait_until(
        "two WATCHDOG=1 from the healthy service", lambda: len(listener.pings_since(started)) >= 2
    )

    shard = service.shard_pid(0)
    os.kill(shard, signal.SIGSTOP)
    stopped = time.monotonic()
    try:

        def period_ran_out() -> bool:
            # systemd acts when a whole period passes without a ping; ask for two.
            pings = listener.pings_since(stopped)
            last = pings[-1] if pings else stopped
            return time.monotonic() - last > 2 * PERIOD

        wait_until(
            "two watchdog periods without WATCHDOG=1 while shard 0 is stopped",
            period_ran_out,
            timeout=30.0,
        )
    finally:
        os.kill(shard, signal.SIGCONT)
    continued = time.monotonic()

    wait_until(
        "WATCHDOG=1 again once shard 0 is continued",
        lambda: listener.pings_since(continued),
        timeout=20.0,
    )
    assert service.shard_pid(0) == shard, "the shard was restarted instead of waited for"
