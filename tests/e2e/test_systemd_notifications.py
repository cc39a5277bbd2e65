"""The service speaks systemd's notify protocol: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import wait_for

pytestmark = pytest.mark.integration

WATCHDOG_USEC = 1_500_000
"""1.5 s: the service pings every 0.5 s and calls a shard stuck after 3 missed pongs."""


class NotifySocket:
    """A stand-in for systemd's notify socket: records every datagram with its time."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode().split("\n")))

    def fields(self) -> list[tuple[float, str]]:
        """Every KEY=value field received, in order, with its arrival time."""
        with self._lock:
            return [(t, f) for t, fields in self.messages for f in fields]

    def first(self, prefix: str) -> int | None:
        """Index in ``fields()`` of the first field starting with ``prefix``."""
        for i, (_, f) in enumerate(self.fields()):
            if f.startswith(prefix):
                return i
        return None

    def watchdogs_since(self, since: float) -> int:
        return sum(1 for t, f in self.fields() if f == "WATCHDOG=1" and t >= since)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


def _env(ns: NotifySocket) -> dict[str, str | None]:
    # Without WATCHDOG_PID the service takes the watchdog as its own.
    return {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": None}


def test_ready_comes_after_the_shards_are_up_then_status_watchdog_and_stopping(
    service, notify_socket, clients, sipp_uas
):
    svc = service(shards=2, env=_env(notify_socket))

    ready = wait_for("READY=1", lambda: notify_socket.first("READY=1") is not None)
    assert ready is not None
    # READY is only sent once every shard is up: ask right after it arrives.
    stats = svc.stats()
    assert stats is not None and all(s["up"] for s in stats["shards"])

    wait_for("a WATCHDOG=1 after READY", lambda: notify_socket.watchdogs_since(0) > 0)
    # A notifier that never sends the terminating NOTIFY keeps the stop going for
    # wait_for_term_notify, long enough for the periodic notifications to show up.
    mute = sipp_uas("uas_unsub_no_term_notify", recv_timeout_ms=60_000)
    client = clients(svc)
    client.subscribe(f"sip:gina@127.0.0.1:{mute.port}", "sip:watcher@example.com")
    assert client.get(15) is not None
    assert svc.stop() == 0

    fields = [f for _, f in notify_socket.fields()]
    ready_at = fields.index("READY=1")
    watchdog_at = fields.index("WATCHDOG=1")
    status_at = next(i for i, f in enumerate(fields) if f.startswith("STATUS=") and i > ready_at)
    stopping_at = fields.index("STOPPING=1")
    assert ready_at < watchdog_at < stopping_at
    assert ready_at < status_at < stopping_at
    assert "2/2 shards up" in fields[status_at]
    # Once stopping, nothing says "ready" or "alive" again, and the status line
    # keeps saying what the service is doing.
    after = fields[stopping_at + 1 :]
    assert all(f.startswith("STATUS=") for f in after), after
    assert all("unsubscribing" in f or "stopp" in f for f in after), after


def test_watchdog_pings_stop_while_a_shard_is_frozen_and_resume_after(service, notify_socket):
    svc = service(shards=2, env=_env(notify_socket))
    wait_for("a WATCHDOG=1", lambda: notify_socket.watchdogs_since(0) > 0)
    frozen = svc.shard_pids()[1]
    interval = WATCHDOG_USEC / 1e6 / 3

    os.kill(frozen, signal.SIGSTOP)
    try:
        # Wait for a stretch of several ping intervals without any WATCHDOG=1.
        quiet = 4 * interval

        def silent_stretch() -> bool:
            now = time.monotonic()
            return now - quiet > frozen_at and notify_socket.watchdogs_since(now - quiet) == 0

        frozen_at = time.monotonic()
        wait_for("the watchdog pings to stop", silent_stretch, timeout=20.0)
        assert svc.running(), "a frozen shard must not take the service down by itself"
    finally:
        os.kill(frozen, signal.SIGCONT)

    resumed = time.monotonic()
    wait_for("WATCHDOG=1 again", lambda: notify_socket.watchdogs_since(resumed) > 0, 20.0)
    assert svc.shard_pids()[1] == frozen, "the thawed shard was not restarted"
    assert svc.stop() == 0
