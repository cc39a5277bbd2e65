"""Shard ownership is stable; systemd notifications are well-formed datagrams."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from presence_b2b.server.routing import shard_of
from presence_b2b.server.sdnotify import SystemdNotifier


def test_the_same_pair_maps_to_the_same_shard_in_another_process() -> None:
    code = (
        "from presence_b2b.server.routing import shard_of;"
        "print(shard_of('sip:alice@example.com', 'sip:bob@example.com', 7))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == shard_of("sip:alice@example.com", "sip:bob@example.com", 7)


def test_pairs_spread_over_all_shards() -> None:
    owners = {shard_of(f"sip:user{i}@example.com", "sip:w@example.com", 4) for i in range(200)}
    assert owners == {0, 1, 2, 3}


def test_record_and_subscriber_are_not_interchangeable_separators() -> None:
    spread = {shard_of("sip:a", "b" * i, 1024) for i in range(20)}
    assert len(spread) > 1


def test_zero_shards_is_refused() -> None:
    with pytest.raises(ValueError):
        shard_of("sip:a", "sip:b", 0)


def test_notifier_without_notify_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    assert n.ready() is False


def test_ready_with_status_arrives_as_one_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    n = SystemdNotifier(path)
    assert n.ready("2 shards up")
    assert rx.recv(4096) == b"READY=1\nSTATUS=2 shards up"
    n.close()
    rx.close()


def test_abstract_namespace_address_is_supported() -> None:
    name = f"presence-b2b-test-{os.getpid()}"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind("\0" + name)
    n = SystemdNotifier("@" + name)
    assert n.watchdog()
    assert rx.recv(64) == b"WATCHDOG=1"
    rx.close()


def test_watchdog_interval_comes_from_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SystemdNotifier("").watchdog_interval == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert SystemdNotifier("").watchdog_interval is None
