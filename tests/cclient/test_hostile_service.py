"""qsa-watch against a service that lies: it refuses, skips or reconnects, never trusts.

Each test runs with both builds (``c_build``); under the sanitizers any read
outside a buffer, leak or undefined behaviour while handling the lie fails it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from presence_b2b.ipc.messages import Hello, Subscribe, Unsubscribe, encode
from presence_b2b.ipc.ring import Ring
from presence_b2b.presence.status import Failure, Status

from tests.cclient.build import CBuild
from tests.cclient.hostile import Connection, HostileService, RawProducer
from tests.e2e.service import wait_for

RECORD = "sip:bob@example.com"
SUBSCRIBER = "sip:alice@example.com"


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileService]:
    service = HostileService(tmp_path / "qsa.sock")
    yield service
    service.close()


def start_watch(
    build: CBuild, service: HostileService, *extra: str, stdout: IO[str] | int = subprocess.PIPE
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [build.watch, RECORD, "--subscriber", SUBSCRIBER, "--control-socket", service.path,
         "--json", *extra],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=build.env(),
    )  # fmt: skip


def welcomed(
    build: CBuild,
    service: HostileService,
    *extra: str,
    shards: int = 1,
    full: bool = False,
    stdout: IO[str] | int = subprocess.PIPE,
) -> tuple[subprocess.Popen[str], Connection, list[RawProducer]]:
    """A qsa-watch connected and welcomed with correct rings; its status rings' raw producers."""
    proc = start_watch(build, service, *extra, stdout=stdout)
    conn = service.accept()
    return proc, conn, conn.welcome(shards=shards, full=full)


def finish(
    build: CBuild, proc: subprocess.Popen[str], *, interrupt: bool = False
) -> tuple[int, str, str]:
    if interrupt and proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    build.check_clean(err)
    return proc.returncode, out or "", err


def memfd_ring_fds(size: int, *, seal: bool) -> list[int]:
    """A ring's three fds with a memfd of ``size`` zero bytes, resize-sealed or not."""
    memfd = os.memfd_create("hostile", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(memfd, size)
    if seal:
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    return [memfd, os.eventfd(0), os.eventfd(0)]


def good_ring_fds() -> list[int]:
    """Copies of the three fds of a correct ring."""
    ring = Ring.create(4096)
    fds = [os.dup(fd) for fd in ring.fds()]
    ring.close()
    return fds


def refused_welcome(
    build: CBuild, service: HostileService, fds: list[int], *, shards: int, announced: int
) -> str:
    """Welcome a new qsa-watch with ``fds`` (closed here); it must exit 2 printing
    nothing. Returns what it said on stderr."""
    proc = start_watch(build, service)
    try:
        service.accept().send_welcome(fds, shards=shards, announced=announced)
    finally:
        for fd in fds:
            os.close(fd)
    code, out, err = finish(build, proc)
    assert (code, out) == (2, ""), err
    return err


def test_a_welcome_with_more_fds_than_a_packet_holds_is_refused(
    c_build: CBuild, hostile: HostileService
) -> None:
    # SCM_MAX_FD is 253: one more than the client makes room for.
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(253)]
    err = refused_welcome(c_build, hostile, fds, shards=83, announced=252)
    assert "MSG_CTRUNC" in err


def test_a_welcome_announcing_another_fd_count_is_refused(
    c_build: CBuild, hostile: HostileService
) -> None:
    fds = good_ring_fds() + good_ring_fds()
    err = refused_welcome(c_build, hostile, fds, shards=1, announced=9)
    assert "welcome announces 9 fds for 1 shards" in err


def test_a_memfd_that_can_still_shrink_is_not_mapped(
    c_build: CBuild, hostile: HostileService
) -> None:
    fds = memfd_ring_fds(512 + 4096, seal=False) + good_ring_fds()
    err = refused_welcome(c_build, hostile, fds, shards=1, announced=6)
    assert "ring 0 of the welcome: memfd is not sealed against shrink and grow" in err


def test_a_ring_without_the_magic_is_not_used(c_build: CBuild, hostile: HostileService) -> None:
    fds = good_ring_fds() + memfd_ring_fds(512 + 4096, seal=True)  # sealed, right size, all zero
    err = refused_welcome(c_build, hostile, fds, shards=1, announced=6)
    assert "ring 1 of the welcome: bad magic" in err


def test_hello_and_subscribe_are_byte_for_byte_what_the_python_client_sends(
    c_build: CBuild, hostile: HostileService
) -> None:
    proc, conn, _ = welcomed(c_build, hostile)

    record = conn.next_record()

    assert conn.hello_packet == encode(Hello(version=1, role="client", name="watch"))
    assert record == encode(Subscribe(1, "presence", RECORD, SUBSCRIBER))
    code, _, err = finish(c_build, proc, interrupt=True)
    assert code == 0, err
    assert conn.next_record() == encode(Unsubscribe(1))


def test_malformed_records_and_unknown_ids_are_skipped_and_the_next_status_printed(
    c_build: CBuild, hostile: HostileService
) -> None:
    proc, conn, (status_ring,) = welcomed(c_build, hostile, "--count", "1")
    assert conn.next_request() == Subscribe(1, "presence", RECORD, SUBSCRIBER)

    # A malformed header makes the consumer skip to head: each is read alone.
    status_ring.put(b"\x81\xa4type", kind=7)  # a kind that does not exist
    status_ring.wait_consumed()
    status_ring.put(b"", length=1 << 20)  # longer than the ring allows
    status_ring.wait_consumed()
    status_ring.put(b"\xc1\xc1\xc1")  # not msgpack
    status_ring.put(encode(Status(id=99, state="active")))  # not one of its ids
    status_ring.put(encode(Failure(id=1, kind="dns", detail="NXDOMAIN", retry_in=2.5)))
    status_ring.put(encode(Status(id=1, state="pending", reason="x")))

    code, out, err = finish(c_build, proc)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["kind"], e["id"]) for e in lines] == [("error", 1), ("status", 1)]
    assert (lines[0]["error_kind"], lines[0]["retry_in"]) == ("dns", 2.5)
    assert conn.next_request() == Unsubscribe(1)


def test_a_status_ring_whose_head_breaks_makes_the_client_reconnect_and_replay(
    c_build: CBuild, hostile: HostileService
) -> None:
    proc, first, (status_ring,) = welcomed(c_build, hostile)
    assert first.next_request() == Subscribe(1, "presence", RECORD, SUBSCRIBER)

    status_ring.publish(status_ring.tail() + status_ring.cap + 8)  # more than the ring holds

    second = hostile.accept()
    (fresh,) = second.welcome(shards=1)
    assert second.next_request() == Subscribe(1, "presence", RECORD, SUBSCRIBER)
    fresh.put(encode(Status(id=1, state="active")))
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["state"] == "active"
    code, _, err = finish(c_build, proc, interrupt=True)
    assert code == 0, err
    assert "status ring is broken" in err


def test_a_subscribe_waits_on_a_full_request_ring_until_space_is_freed(
    c_build: CBuild, hostile: HostileService
) -> None:
    proc, conn, _ = welcomed(c_build, hostile, full=True)

    wait_for("producer_waiting set by the client", conn.producer_waiting, timeout=5.0)
    conn.free_request_ring()

    assert conn.next_request() == Subscribe(1, "presence", RECORD, SUBSCRIBER)
    assert conn.producer_waiting() == 0
    code, _, err = finish(c_build, proc, interrupt=True)
    assert code == 0, err


def test_a_request_ring_that_stays_full_makes_the_watch_give_up_with_exit_2(
    c_build: CBuild, hostile: HostileService
) -> None:
    proc, _, _ = welcomed(c_build, hostile, full=True)

    code, out, err = finish(c_build, proc)  # qsa-watch waits 5 s, as the Python watch

    assert code == 2
    assert "request ring stayed full" in err
    assert out == ""


def test_thousands_of_statuses_through_three_small_rings_all_arrive_in_ring_order(
    c_build: CBuild, hostile: HostileService, tmp_path: Path
) -> None:
    # 64 KiB rings hold about 1,300 of these: the Python producers fill them
    # over and over, wait on the space doorbell, wrap with padding records.
    count = 30_000
    output = tmp_path / "watch.out"  # a file, not a pipe nobody reads while we write
    with output.open("w") as sink:
        proc, conn, _ = welcomed(c_build, hostile, "--count", str(count), shards=3, stdout=sink)
    writers = conn.status_writers()
    assert conn.next_request() == Subscribe(1, "presence", RECORD, SUBSCRIBER)

    waits: list[bool] = []  # per wait for space: did the client's doorbell (or tail) end it?

    def produce() -> None:
        for i in range(count):
            record = encode(Status(id=1, state="active", merged=i))
            while not writers[i % 3].try_write(record):
                waits.append(writers[i % 3].wait_for_space(5.0))

    # The client stopped, the producer fills the rings and sleeps on the space
    # doorbell: only the client's doorbell, once it runs again, can wake it.
    os.kill(proc.pid, signal.SIGSTOP)
    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.5)
    assert producer.is_alive(), "all written although nobody read"
    os.kill(proc.pid, signal.SIGCONT)
    producer.join(120)
    assert not producer.is_alive()
    assert waits, "the rings never filled up"
    assert all(waits), f"{waits.count(False)} of {len(waits)} waits for space were never woken"

    code, _, err = finish(c_build, proc)
    assert code == 0, err
    merged = [json.loads(line)["merged"] for line in output.read_text().splitlines()]
    assert sorted(merged) == list(range(count))
    for shard in range(3):
        mine = [m for m in merged if m % 3 == shard]
        assert mine == sorted(mine), f"ring {shard} out of order"
