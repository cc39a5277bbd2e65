"""Doorbells, sleeping, blocking and async waiting, within one process."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from presence_b2b.ipc.ring import OFF_HEAD, Ring, RingBroken, RingFull


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = uvloop.new_event_loop()
    yield lp
    lp.close()


def _eventfd_count(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


def test_the_producer_rings_only_for_a_sleeping_consumer(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    data_efd = small_ring.fds()[1]
    writer.try_write(b"awake")
    assert _eventfd_count(data_efd) == 0
    reader.read_batch()
    assert reader.prepare_sleep()
    writer.try_write(b"asleep")
    assert _eventfd_count(data_efd) == 1


def test_write_batch_rings_once_for_the_whole_batch(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    assert reader.prepare_sleep()
    writer.write_batch([b"a", b"b", b"c"])
    assert _eventfd_count(small_ring.fds()[1]) == 1


def test_prepare_sleep_refuses_when_data_is_waiting(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.try_write(b"x")
    assert not reader.prepare_sleep()
    reader.read_batch()
    assert reader.prepare_sleep()


def test_the_consumer_signals_space_only_to_a_waiting_producer(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    space_efd = small_ring.fds()[2]
    writer.write_batch([b"x" * 1000] * 4)
    reader.read_batch(1)
    assert _eventfd_count(space_efd) == 0
    assert not writer.try_write(b"y" * 2000)
    assert not writer.wait_for_space(0.0)  # announces waiting; nothing freed yet
    waiter = threading.Thread(target=writer.wait_for_space, args=(5.0,))
    waiter.start()
    time.sleep(0.05)
    reader.read_batch(1)
    waiter.join(5.0)
    assert not waiter.is_alive()


def test_write_blocking_raises_ring_full_after_the_timeout(small_ring: Ring) -> None:
    writer = small_ring.writer()
    writer.write_batch([b"x" * 1000] * 4)
    start = time.monotonic()
    with pytest.raises(RingFull):
        writer.write_blocking(b"y" * 100, 0.1)
    assert 0.09 <= time.monotonic() - start < 2.0


def test_write_blocking_waits_for_the_consumer_to_make_room(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.write_batch([b"x" * 1000] * 4)
    timer = threading.Timer(0.05, reader.read_batch)
    timer.start()
    writer.write_blocking(b"y" * 1000, 5.0)
    timer.join()
    assert reader.read_batch() == [b"y" * 1000]


def test_read_blocking_returns_nothing_after_the_timeout(small_ring: Ring) -> None:
    start = time.monotonic()
    assert small_ring.reader().read_blocking(0.1) == []
    assert 0.09 <= time.monotonic() - start < 2.0


def test_read_blocking_wakes_when_a_record_arrives(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    timer = threading.Timer(0.05, writer.try_write, args=(b"late",))
    timer.start()
    assert reader.read_blocking(5.0) == [b"late"]
    timer.join()


def test_the_async_reader_drains_what_was_there_before_attaching(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.write_batch([b"a", b"b"])
    got: list[bytes] = []
    reader.attach_reader(loop, got.extend)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert got == [b"a", b"b"]
    reader.detach()


def test_the_async_reader_is_woken_by_the_doorbell(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    got: list[bytes] = []
    reader.attach_reader(loop, got.extend)
    loop.run_until_complete(asyncio.sleep(0.01))  # drained and asleep
    sender = threading.Timer(0.02, writer.write_batch, args=([b"wake", b"up"],))
    sender.start()

    async def until_delivered() -> None:
        while len(got) < 2:
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(until_delivered(), 5.0))
    sender.join()
    assert got == [b"wake", b"up"]
    reader.detach()


def test_a_failing_callback_does_not_stall_the_async_reader(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    got: list[bytes] = []

    def callback(batch: list[bytes]) -> None:
        got.extend(batch)
        if len(got) == 1:
            raise ValueError("decoder blew up")

    reader.attach_reader(loop, callback, max_records=1)
    writer.write_batch([b"1", b"2", b"3"])
    loop.run_until_complete(asyncio.sleep(0.05))
    assert got == [b"1", b"2", b"3"]
    assert len(errors) == 1
    reader.detach()


def test_detach_stops_delivery(small_ring: Ring, loop: asyncio.AbstractEventLoop) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    got: list[bytes] = []
    reader.attach_reader(loop, got.extend)
    loop.run_until_complete(asyncio.sleep(0.01))
    reader.detach()
    writer.try_write(b"unseen")
    loop.run_until_complete(asyncio.sleep(0.02))
    assert got == []


def test_a_broken_ring_detaches_the_async_reader_and_reports_it(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    reader = small_ring.reader()
    reports: list[RingBroken] = []
    reader.attach_reader(loop, lambda _b: None, on_broken=reports.append)
    os.pwrite(small_ring.fds()[0], struct.pack("=Q", 3), OFF_HEAD)
    os.eventfd_write(small_ring.fds()[1], 1)
    loop.run_until_complete(asyncio.sleep(0.02))
    assert len(reports) == 1
    assert reader.broken is not None


def test_close_detaches_an_attached_reader(loop: asyncio.AbstractEventLoop) -> None:
    ring = Ring.create(4096)
    ring.reader().attach_reader(loop, lambda _b: None)
    ring.close()
    loop.run_until_complete(asyncio.sleep(0.01))  # no callback on a closed fd


def test_async_write_awaits_room_when_the_ring_is_full(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()

    async def main() -> list[bytes]:
        writer.write_batch([b"x" * 1000] * 4)
        asyncio.get_running_loop().call_later(0.05, reader.read_batch)
        await writer.write(b"y" * 1000, timeout=5.0)
        return reader.read_batch()

    assert loop.run_until_complete(main()) == [b"y" * 1000]


def test_async_write_raises_ring_full_after_the_timeout(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer = small_ring.writer()

    async def main() -> None:
        writer.write_batch([b"x" * 1000] * 4)
        await writer.write(b"y" * 100, timeout=0.05)

    with pytest.raises(RingFull):
        loop.run_until_complete(main())


def test_concurrent_async_writes_keep_their_order(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    got: list[bytes] = []

    async def main() -> None:
        reader.attach_reader(asyncio.get_running_loop(), got.extend)
        await asyncio.gather(*(writer.write(bytes([i]) * 1500, timeout=5.0) for i in range(20)))
        while len(got) < 20:
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(main(), 10.0))
    assert got == [bytes([i]) * 1500 for i in range(20)]
    reader.detach()
