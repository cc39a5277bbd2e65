"""Doorbells, sleeping, blocking and async waiting, within one process."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop
from presence_b2b.ipc.ring import (
    OFF_CONSUMER_SLEEPING,
    OFF_HEAD,
    OFF_PRODUCER_WAITING,
    Ring,
    RingBroken,
    RingFull,
)

SAFETY = 5.0
"""Seconds after which a wait that should have ended fails the test instead of hanging."""


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = uvloop.new_event_loop()
    yield lp
    lp.close()


class Collected:
    """An ``attach_reader`` callback that a test can await a number of records from."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.changed = asyncio.Event()

    def __call__(self, batch: list[bytes]) -> None:
        self.records.extend(batch)
        self.changed.set()

    async def at_least(self, count: int) -> list[bytes]:
        async def enough() -> None:
            while len(self.records) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), SAFETY)
        return self.records


async def _turns(count: int = 20) -> None:
    """Let the loop run ``count`` rounds, polling its fds each time: long enough for any
    ready callback to run, without waiting on the clock."""
    for _ in range(count):
        await asyncio.sleep(0)


def _producer_waiting(ring: Ring) -> bool:
    """The ring's producer_waiting word (docs/ring-layout.md), as the consumer sees it."""
    return os.pread(ring.fds()[0], 8, OFF_PRODUCER_WAITING) != bytes(8)


def _until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to reach a state the test can observe."""
    deadline = time.monotonic() + SAFETY
    while not condition():
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.0005)


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


def test_a_writer_that_rings_later_rings_once_for_every_write_of_a_turn(
    small_ring: Ring,
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    owed: list[Callable[[], None]] = []
    writer.ring_later(owed.append)
    assert reader.prepare_sleep()
    writer.try_write(b"a")
    writer.write_batch([b"b", b"c"])
    writer.try_write(b"d")
    assert len(owed) == 1
    assert _eventfd_count(small_ring.fds()[1]) == 0  # published, not rung yet
    assert reader.read_batch() == [b"a", b"b", b"c", b"d"]
    owed.pop()()
    assert _eventfd_count(small_ring.fds()[1]) == 1
    writer.try_write(b"e")
    assert len(owed) == 1  # the next turn owes a ring of its own


def test_a_ring_owed_to_a_consumer_that_is_awake_is_not_rung(small_ring: Ring) -> None:
    writer, _awake = small_ring.writer(), small_ring.reader()
    owed: list[Callable[[], None]] = []
    writer.ring_later(owed.append)
    writer.try_write(b"a")
    owed.pop()()
    assert _eventfd_count(small_ring.fds()[1]) == 0


def test_a_ring_owed_after_the_ring_closed_does_nothing() -> None:
    ring = Ring.create(4096)
    writer, reader = ring.writer(), ring.reader()
    owed: list[Callable[[], None]] = []
    writer.ring_later(owed.append)
    assert reader.prepare_sleep()
    writer.try_write(b"a")
    ring.close()
    owed.pop()()


def test_the_async_reader_is_woken_once_for_a_turn_of_deferred_writes(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.ring_later(loop.call_soon)
    got = Collected()
    reader.attach_reader(loop, got)
    loop.run_until_complete(_turns())  # drained and asleep
    wakeups = reader.wakeups

    async def three_writes() -> list[bytes]:
        for record in (b"x", b"y", b"z"):
            writer.try_write(record)
        return await got.at_least(3)

    assert loop.run_until_complete(three_writes()) == [b"x", b"y", b"z"]
    assert reader.wakeups == wakeups + 1
    reader.detach()


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
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(writer.wait_for_space(SAFETY)))
    waiter.start()
    _until(lambda: _producer_waiting(small_ring))
    reader.read_batch(1)
    waiter.join(SAFETY)
    assert woken == [True]


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
    blocked = threading.Thread(target=writer.write_blocking, args=(b"y" * 1000, SAFETY))
    blocked.start()
    _until(lambda: _producer_waiting(small_ring))
    reader.read_batch()
    blocked.join(SAFETY)
    assert reader.read_batch() == [b"y" * 1000]


def test_read_blocking_returns_nothing_after_the_timeout(small_ring: Ring) -> None:
    start = time.monotonic()
    assert small_ring.reader().read_blocking(0.1) == []
    assert 0.09 <= time.monotonic() - start < 2.0


def test_read_blocking_wakes_when_a_record_arrives(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()

    def write_once_the_consumer_sleeps() -> None:
        _until(lambda: os.pread(small_ring.fds()[0], 8, OFF_CONSUMER_SLEEPING) != bytes(8))
        writer.try_write(b"late")

    sender = threading.Thread(target=write_once_the_consumer_sleeps)
    sender.start()
    assert reader.read_blocking(SAFETY) == [b"late"]
    sender.join(SAFETY)


def test_the_async_reader_drains_what_was_there_before_attaching(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.write_batch([b"a", b"b"])
    got = Collected()
    reader.attach_reader(loop, got)
    assert loop.run_until_complete(got.at_least(2)) == [b"a", b"b"]
    reader.detach()


def test_the_async_reader_is_woken_by_the_doorbell(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    got = Collected()
    reader.attach_reader(loop, got)
    loop.run_until_complete(_turns())  # drained and asleep
    assert reader.prepare_sleep()
    wakeups = reader.wakeups
    writer.write_batch([b"wake", b"up"])
    assert loop.run_until_complete(got.at_least(2)) == [b"wake", b"up"]
    assert reader.wakeups == wakeups + 1
    reader.detach()


def test_a_failing_callback_does_not_stall_the_async_reader(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    got = Collected()

    def callback(batch: list[bytes]) -> None:
        got(batch)
        if len(got.records) == 1:
            raise ValueError("decoder blew up")

    reader.attach_reader(loop, callback, max_records=1)
    writer.write_batch([b"1", b"2", b"3"])
    assert loop.run_until_complete(got.at_least(3)) == [b"1", b"2", b"3"]
    assert len(errors) == 1
    reader.detach()


def test_detach_stops_delivery(small_ring: Ring, loop: asyncio.AbstractEventLoop) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    got: list[bytes] = []
    reader.attach_reader(loop, got.extend)
    loop.run_until_complete(_turns())
    reader.detach()
    writer.try_write(b"unseen")
    loop.run_until_complete(_turns())
    assert got == []
    assert reader.read_batch() == [b"unseen"]


def test_a_broken_ring_detaches_the_async_reader_and_reports_it(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    reader = small_ring.reader()
    reports: list[RingBroken] = []
    reported = asyncio.Event()

    def report(broken: RingBroken) -> None:
        reports.append(broken)
        reported.set()

    reader.attach_reader(loop, lambda _b: None, on_broken=report)
    os.pwrite(small_ring.fds()[0], struct.pack("=Q", 3), OFF_HEAD)
    os.eventfd_write(small_ring.fds()[1], 1)
    loop.run_until_complete(asyncio.wait_for(reported.wait(), SAFETY))
    loop.run_until_complete(_turns())
    assert len(reports) == 1
    assert reader.broken is not None


def test_close_detaches_an_attached_reader(loop: asyncio.AbstractEventLoop) -> None:
    ring = Ring.create(4096)
    got: list[bytes] = []
    ring.reader().attach_reader(loop, got.extend)
    data_fd = ring.fds()[1]
    ring.close()
    assert not loop.remove_reader(data_fd), "the loop no longer watches its doorbell"
    loop.run_until_complete(_turns())
    assert got == []


def test_async_write_awaits_room_when_the_ring_is_full(
    small_ring: Ring, loop: asyncio.AbstractEventLoop
) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()

    async def main() -> list[bytes]:
        writer.write_batch([b"x" * 1000] * 4)
        write = asyncio.create_task(writer.write(b"y" * 1000, timeout=SAFETY))
        await _turns()
        assert not write.done() and _producer_waiting(small_ring)
        reader.read_batch()
        await write
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
    got = Collected()

    async def main() -> list[bytes]:
        reader.attach_reader(asyncio.get_running_loop(), got)
        await asyncio.gather(*(writer.write(bytes([i]) * 1500, timeout=SAFETY) for i in range(20)))
        return await got.at_least(20)

    assert loop.run_until_complete(main()) == [bytes([i]) * 1500 for i in range(20)]
    reader.detach()
