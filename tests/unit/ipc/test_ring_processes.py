"""A producer and a consumer in separate processes: volume, wake-ups, backpressure."""

from __future__ import annotations

import asyncio
import os
import random
import struct
import time
import zlib
from collections.abc import Callable

import pytest
import uvloop
from presence_b2b.ipc.ring import Ring

SEQ = struct.Struct("=Q")


def _fork_producer(fds: tuple[int, int, int], body: Callable[[Ring], None]) -> int:
    """Fork a child that attaches the ring from inherited fds and runs ``body``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            ring = Ring.attach(*(os.dup(fd) for fd in fds))
            body(ring)
            ring.close()
            code = 0
        finally:
            os._exit(code)
    return pid


def _reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"producer status {status}"


@pytest.mark.slow
def test_a_million_records_cross_processes_intact_and_in_order() -> None:
    total, per_batch = 1_000_000, 256
    result_r, result_w = os.pipe()

    def produce(ring: Ring) -> None:
        writer = ring.writer()
        crc = 0
        pack = SEQ.pack
        for start in range(0, total, per_batch):
            batch = [pack(i) for i in range(start, min(start + per_batch, total))]
            crc = zlib.crc32(b"".join(batch), crc)
            while batch:
                n = writer.write_batch(batch)
                batch = batch[n:]
                if batch:
                    writer.wait_for_space(5.0)
        os.write(result_w, SEQ.pack(crc))

    with Ring.create(1 << 16) as ring:
        reader = ring.reader()
        pid = _fork_producer(ring.fds(), produce)
        crc = 0
        count = 0
        last = -1
        deadline = time.monotonic() + 30.0
        while count < total and time.monotonic() < deadline:
            batch = reader.read_blocking(1.0)
            if batch:
                count += len(batch)
                crc = zlib.crc32(b"".join(batch), crc)
                last = SEQ.unpack(batch[-1])[0]
        _reap(pid)
        assert count == total
        assert last == total - 1
        assert reader.bad_records == 0
        assert SEQ.unpack(os.read(result_r, 8))[0] == crc
    os.close(result_r)
    os.close(result_w)


def _consume_all(rings: list[Ring], count: int, timeout: float) -> list[list[int]]:
    """Drain every ring from one uvloop loop until each has delivered ``count`` records."""
    loop = uvloop.new_event_loop()
    got: list[list[int]] = [[] for _ in rings]
    done = loop.create_future()

    def collector(i: int) -> Callable[[list[bytes]], None]:
        def on_batch(batch: list[bytes]) -> None:
            got[i].extend(SEQ.unpack_from(rec)[0] for rec in batch)
            if all(len(g) >= count for g in got) and not done.done():
                done.set_result(None)

        return on_batch

    readers = [ring.reader() for ring in rings]
    for i, reader in enumerate(readers):
        reader.attach_reader(loop, collector(i), max_records=3)
    try:
        loop.run_until_complete(asyncio.wait_for(done, timeout))
    except TimeoutError:
        pass
    finally:
        for reader in readers:
            reader.detach()
        loop.close()
    assert all(r.bad_records == 0 for r in readers)
    assert all(r.wakeups > 0 for r in readers), "the doorbell path was not exercised"
    return got


def _ping_pong_producer(
    rounds: int, seed: int, ack_fds: tuple[int, int, int]
) -> Callable[[Ring], None]:
    """Each round: write a small burst, then sleep until the consumer acknowledges it.

    Every burst is the last thing the consumer will get until it answers, so a
    lost data-ready wake-up stalls the round (and the ack ring's wake-up is
    tested the other way). The child exits with status 3 on a stall.
    """

    def produce(ring: Ring) -> None:
        writer = ring.writer()
        acks = Ring.attach(*(os.dup(fd) for fd in ack_fds)).reader()
        rng = random.Random(seed)
        seq = 0
        for _ in range(rounds):
            burst = [SEQ.pack(seq + i) for i in range(rng.randint(1, 4))]
            seq += len(burst)
            pause = rng.random()
            if pause < 0.3:
                time.sleep(rng.uniform(0, 0.0001))
            elif pause < 0.6:
                os.sched_yield()
            if len(burst) == 1 or rng.random() < 0.5:
                for rec in burst:
                    writer.write_blocking(rec, 5.0)
            else:
                assert writer.write_batch(burst) == len(burst)
            acked = -1
            while acked < seq:  # a burst may be acknowledged in pieces
                ack = acks.read_blocking(2.0)
                if not ack:
                    os._exit(3)
                acked = SEQ.unpack(ack[-1])[0]

    return produce


@pytest.mark.slow
def test_no_wake_up_is_lost_when_consumers_keep_falling_asleep() -> None:
    rounds, pairs = 10_000, 3
    rings = [Ring.create(4096) for _ in range(pairs)]
    ack_rings = [Ring.create(4096) for _ in range(pairs)]
    ack_writers = [ring.writer() for ring in ack_rings]
    received = [0] * pairs
    out_of_order: list[tuple[int, int]] = []

    def collector(i: int) -> Callable[[list[bytes]], None]:
        def on_batch(batch: list[bytes]) -> None:
            for rec in batch:
                if SEQ.unpack(rec)[0] != received[i]:
                    out_of_order.append((i, received[i]))
                received[i] += 1
            ack_writers[i].try_write(SEQ.pack(received[i]))

        return on_batch

    async def reap(pid: int) -> int:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            await asyncio.sleep(0.005)

    loop = uvloop.new_event_loop()
    try:
        pids = [
            _fork_producer(ring.fds(), _ping_pong_producer(rounds, seed, ack_ring.fds()))
            for seed, (ring, ack_ring) in enumerate(zip(rings, ack_rings, strict=True))
        ]
        readers = [ring.reader() for ring in rings]
        for i, reader in enumerate(readers):
            reader.attach_reader(loop, collector(i))

        async def reap_all() -> list[int]:
            return await asyncio.wait_for(asyncio.gather(*(reap(pid) for pid in pids)), 60.0)

        codes = loop.run_until_complete(reap_all())
    finally:
        loop.close()
        for ring in rings + ack_rings:
            ring.close()
    assert codes == [0] * pairs, "exit status 3: a round stalled, a wake-up was lost"
    assert not out_of_order
    assert all(r.wakeups > rounds // 2 for r in readers)
    assert all(r.bad_records == 0 for r in readers)


def test_no_wake_up_is_lost_when_the_producer_keeps_hitting_a_full_ring() -> None:
    count = 3000
    record = 1000  # four to a 4 KiB ring: the producer waits on almost every write

    def produce(ring: Ring) -> None:
        writer = ring.writer()
        pad = b"p" * (record - SEQ.size)
        for seq in range(count):
            writer.write_blocking(SEQ.pack(seq) + pad, 5.0)

    with Ring.create(4096) as ring:
        pid = _fork_producer(ring.fds(), produce)
        got = _consume_all([ring], count, timeout=30.0)
        _reap(pid)
    assert got[0] == list(range(count))


def test_an_async_producer_gets_backpressure_from_a_slow_consumer() -> None:
    count = 400

    def produce(ring: Ring) -> None:
        writer = ring.writer()
        loop = uvloop.new_event_loop()

        async def main() -> None:
            for seq in range(count):
                await writer.write(SEQ.pack(seq) + b"a" * 1500, timeout=5.0)

        loop.run_until_complete(main())
        loop.close()

    with Ring.create(4096) as ring:
        reader = ring.reader()
        pid = _fork_producer(ring.fds(), produce)
        seqs: list[int] = []
        deadline = time.monotonic() + 30.0
        while len(seqs) < count and time.monotonic() < deadline:
            seqs += [SEQ.unpack_from(rec)[0] for rec in reader.read_blocking(1.0, max_records=1)]
            if len(seqs) % 50 == 0:
                time.sleep(0.002)  # slow down now and then: the producer must wait, not fail
        _reap(pid)
        assert reader.high_water_bytes > 4096 // 2
    assert seqs == list(range(count))
