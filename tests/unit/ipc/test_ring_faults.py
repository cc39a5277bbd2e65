"""A producer that dies, lies or scribbles cannot crash or hang the consumer."""

from __future__ import annotations

import os
import random
import signal
import struct
import time
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from presence_b2b.ipc.ring import (
    DATA_OFFSET,
    KIND_DATA,
    KIND_PAD,
    OFF_HEAD,
    OFF_TAIL,
    Ring,
    RingBroken,
    RingReader,
)


def _poke_record(ring: Ring, pos: int, length: int, kind: int, body: bytes = b"") -> None:
    os.pwrite(ring.fds()[0], struct.pack("=II", length, kind) + body, DATA_OFFSET + pos)


def _publish_head(ring: Ring, head: int) -> None:
    os.pwrite(ring.fds()[0], struct.pack("=Q", head), OFF_HEAD)


def _shared_tail(ring: Ring) -> int:
    value: int = struct.unpack("=Q", os.pread(ring.fds()[0], 8, OFF_TAIL))[0]
    return value


def test_reader_skips_and_counts_a_record_with_a_lying_length(small_ring: Ring) -> None:
    reader = small_ring.reader()
    _poke_record(small_ring, 0, 3000, KIND_DATA, b"short")
    _publish_head(small_ring, 16)
    assert reader.read_batch() == []
    assert reader.bad_records == 1
    assert _shared_tail(small_ring) == 16


def test_reader_skips_a_record_longer_than_max_record(small_ring: Ring) -> None:
    reader = small_ring.reader()
    _poke_record(small_ring, 0, small_ring.max_record + 8, KIND_DATA)
    _publish_head(small_ring, 4096)
    assert reader.read_batch() == []
    assert reader.bad_records == 1


def test_reader_skips_a_record_of_unknown_kind(small_ring: Ring) -> None:
    reader = small_ring.reader()
    _poke_record(small_ring, 0, 0, 0)  # what a never-written record looks like
    _publish_head(small_ring, 8)
    assert reader.read_batch() == []
    assert reader.bad_records == 1


def test_reader_skips_a_padding_record_with_the_wrong_length(small_ring: Ring) -> None:
    reader = small_ring.reader()
    _poke_record(small_ring, 0, 100, KIND_PAD)
    _publish_head(small_ring, 112)
    assert reader.read_batch() == []
    assert reader.bad_records == 1


def test_reader_skips_a_data_record_that_would_straddle_the_end(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.write_batch([b"x" * 2000, b"x" * 1984])  # head at 4000: 96 bytes left
    assert len(reader.read_batch()) == 2
    _poke_record(small_ring, 4000, 200, KIND_DATA)
    _publish_head(small_ring, 4000 + 208)
    assert reader.read_batch() == []
    assert reader.bad_records == 1


def test_good_records_before_a_bad_one_are_delivered_and_later_ones_read(
    small_ring: Ring,
) -> None:
    reader = small_ring.reader()
    _poke_record(small_ring, 0, 3, KIND_DATA, b"one")
    _poke_record(small_ring, 16, 77, 9)
    _publish_head(small_ring, 64)
    assert reader.read_batch() == [b"one"]
    assert reader.bad_records == 1
    _poke_record(small_ring, 64, 3, KIND_DATA, b"two")
    _publish_head(small_ring, 80)
    assert reader.read_batch() == [b"two"]


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(2**64 - 8, id="behind-tail"),
        pytest.param(4096 + 8, id="beyond-capacity"),
        pytest.param(12, id="unaligned"),
    ],
)
def test_corrupt_head_marks_the_ring_broken_every_time(small_ring: Ring, head: int) -> None:
    reader = small_ring.reader()
    _publish_head(small_ring, head)
    for _ in range(3):
        with pytest.raises(RingBroken, match="head"):
            reader.read_batch()
    assert reader.broken is not None


def test_a_head_moved_backwards_marks_the_ring_broken(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.try_write(b"a" * 100)
    reader.read_batch()
    _publish_head(small_ring, 8)
    with pytest.raises(RingBroken):
        reader.read_batch()


def test_writer_refuses_a_tail_that_moved_backwards(small_ring: Ring) -> None:
    writer, reader = small_ring.writer(), small_ring.reader()
    writer.write_batch([b"a" * 1000] * 4)
    reader.read_batch()
    assert writer.free_bytes() == 4096  # the writer has seen tail at 4032
    os.pwrite(small_ring.fds()[0], struct.pack("=Q", 8), OFF_TAIL)
    with pytest.raises(RingBroken, match="tail"):
        writer.free_bytes()
    with pytest.raises(RingBroken):
        writer.try_write(b"b")
    with pytest.raises(RingBroken):
        writer.write_batch([b"c"])


def test_writer_refuses_a_tail_past_head(small_ring: Ring) -> None:
    writer = small_ring.writer()
    os.pwrite(small_ring.fds()[0], struct.pack("=Q", 1 << 40), OFF_TAIL)
    with pytest.raises(RingBroken, match="tail"):
        writer.free_bytes()


@settings(max_examples=300, deadline=None)
@given(
    garbage=st.binary(max_size=4096),
    at=st.integers(0, 4095),
    head=st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 512).map(lambda x: x * 8)),
)
def test_garbage_in_the_data_area_never_crashes_or_hangs_the_reader(
    garbage: bytes, at: int, head: int
) -> None:
    with Ring.create(4096) as ring:
        reader = ring.reader()
        os.pwrite(ring.fds()[0], garbage[: 4096 - at], DATA_OFFSET + at)
        _publish_head(ring, head)
        start = time.monotonic()
        try:
            batch = reader.read_batch()
        except RingBroken:
            return
        assert time.monotonic() - start < 1.0
        assert all(type(r) is bytes and len(r) <= ring.max_record for r in batch)
        assert _shared_tail(ring) == head  # everything published was consumed or skipped
        assert reader.read_batch() == []


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(st.binary(max_size=600), min_size=1, max_size=12),
    flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=6),
)
def test_flipped_bytes_in_published_records_are_counted_not_fatal(
    records: list[bytes], flips: list[tuple[int, int]]
) -> None:
    with Ring.create(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        written = writer.write_batch(records)
        memfd = ring.fds()[0]
        for pos, mask in flips:
            (byte,) = os.pread(memfd, 1, DATA_OFFSET + pos)
            os.pwrite(memfd, bytes([byte ^ mask]), DATA_OFFSET + pos)
        got = reader.read_batch()
        assert len(got) <= written
        assert reader.bad_records <= 1
        assert reader.read_batch() == []
        assert writer.try_write(b"after")  # the ring is usable again
        assert reader.read_batch() == [b"after"]


# ---------------------------------------------------------------- killed producers


def _fork(child: object) -> int:
    """Run ``child()`` in a forked process that never returns into pytest."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            child()  # type: ignore[operator]
        finally:
            os._exit(0)
    return pid


def _kill_self_after(first: bytes) -> Iterator[bytes]:
    """Yield one record, then die where the writer has written it but not published it."""
    yield first
    os.kill(os.getpid(), signal.SIGKILL)
    yield b"never"  # pragma: no cover


def test_a_producer_killed_before_publishing_exposes_nothing(small_ring: Ring) -> None:
    reader = small_ring.reader()
    fds = small_ring.fds()

    def child() -> None:
        ring = Ring.attach(*(os.dup(fd) for fd in fds))
        writer = ring.writer()
        writer.write_batch([b"published"])
        writer.write_batch(_kill_self_after(b"P" * 500))

    pid = _fork(child)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    # The body of the second record is in the data area, but head does not cover it.
    assert os.pread(fds[0], 500, DATA_OFFSET + 24 + 8) == b"P" * 500
    assert reader.read_batch() == [b"published"]
    assert reader.read_batch() == []
    assert reader.bad_records == 0


def test_a_respawned_producer_overwrites_what_a_killed_one_left(small_ring: Ring) -> None:
    reader = small_ring.reader()
    fds = small_ring.fds()

    def child() -> None:
        ring = Ring.attach(*(os.dup(fd) for fd in fds))
        ring.writer().write_batch(_kill_self_after(b"P" * 500))

    os.waitpid(_fork(child), 0)
    assert small_ring.writer().try_write(b"fresh")
    assert reader.read_batch() == [b"fresh"]


def _checked(seq: int) -> bytes:
    body = struct.pack("=Q", seq) * (1 + seq % 40)
    return struct.pack("=I", zlib.crc32(body)) + body


@pytest.mark.parametrize("attempt", range(5))
def test_a_producer_killed_at_a_random_moment_leaves_only_whole_records(attempt: int) -> None:
    with Ring.create(1 << 16) as ring:
        fds = ring.fds()
        reader: RingReader = ring.reader()

        def child() -> None:
            r = Ring.attach(*(os.dup(fd) for fd in fds))
            w = r.writer()
            seq = 0
            while True:
                batch = [_checked(seq + i) for i in range(1 + seq % 7)]
                n = w.write_batch(batch)
                seq += n
                if not n:
                    w.wait_for_space(0.01)

        pid = _fork(child)
        time.sleep(random.uniform(0.005, 0.05))
        got: list[bytes] = []
        got += reader.read_blocking(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while batch := reader.read_batch():
            got += batch
        assert reader.bad_records == 0
        for seq, rec in enumerate(got):
            assert rec == _checked(seq)
