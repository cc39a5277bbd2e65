"""Round trips, sizes, the wrap and the API surface of the ring."""

from __future__ import annotations

import os
import struct

import pytest
from presence_b2b.ipc.ring import (
    DATA_OFFSET,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD,
    MAGIC,
    VERSION,
    Ring,
    RingError,
    record_size,
)


def test_a_record_written_is_read_back_as_bytes(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    assert w.try_write(b"hello")
    batch = r.read_batch()
    assert batch == [b"hello"]
    assert type(batch[0]) is bytes
    assert r.records_read == 1


def test_reading_an_empty_ring_returns_nothing(small_ring: Ring) -> None:
    assert small_ring.reader().read_batch() == []


def test_a_zero_length_record_is_a_record(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    assert w.try_write(b"")
    assert r.read_batch() == [b""]


def test_bytearray_and_memoryview_payloads_are_accepted(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    words = memoryview(bytearray(16)).cast("Q")
    words[0] = 1
    assert w.try_write(bytearray(b"ab"))
    assert w.try_write(memoryview(b"xcdx")[1:3])
    assert w.write_batch([words]) == 1
    assert r.read_batch() == [b"ab", b"cd", struct.pack("=QQ", 1, 0)]


def test_records_are_eight_byte_aligned_with_an_eight_byte_header() -> None:
    assert [record_size(n) for n in (0, 1, 8, 9, 16, 17)] == [8, 16, 16, 24, 24, 32]


def test_a_full_ring_refuses_a_record_and_keeps_what_it_has(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    payload = b"x" * 1016  # a 1024-byte record: four fill the data area exactly
    assert [w.try_write(payload) for _ in range(5)] == [True] * 4 + [False]
    assert w.free_bytes() == 0
    assert w.depth_bytes() == 4096
    assert r.read_batch() == [payload] * 4
    assert w.free_bytes() == 4096


def test_max_record_always_fits_an_empty_ring_wherever_head_is(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    big = b"m" * small_ring.max_record
    for small in range(0, small_ring.max_record, 72):
        assert w.try_write(b"s" * small)
        assert r.read_batch() == [b"s" * small]
        assert w.try_write(big), f"after a {small}-byte record"
        assert r.read_batch() == [big]


def test_a_record_over_max_record_is_refused_with_value_error(small_ring: Ring) -> None:
    with pytest.raises(ValueError, match="max_record"):
        small_ring.writer().try_write(b"x" * (small_ring.max_record + 1))


def test_a_record_never_straddles_the_wrap(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    assert w.write_batch([b"a" * 2000, b"a" * 1000]) == 2  # 2008 + 1008 bytes: 1080 left
    assert w.try_write(b"a" * 1000)  # 1008 more: 72 left before the end
    assert len(r.read_batch()) == 3
    assert w.try_write(b"b" * 1500)  # 1512 bytes: does not fit in 72
    raw = os.pread(small_ring.fds()[0], 4096, DATA_OFFSET)
    length, kind = struct.unpack_from("=II", raw, 4024)
    assert (length, kind) == (72 - 8, KIND_PAD)
    length, kind = struct.unpack_from("=II", raw, 0)
    assert (length, kind) == (1500, KIND_DATA)
    assert raw[8:1508] == b"b" * 1500
    assert r.read_batch() == [b"b" * 1500]


def test_write_batch_writes_the_prefix_that_fits_and_reports_how_many(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    payloads = [bytes([i]) * 1000 for i in range(6)]
    assert w.write_batch(payloads) == 4
    assert r.read_batch() == payloads[:4]
    assert w.write_batch(payloads[4:]) == 2
    assert r.read_batch() == payloads[4:]


def test_write_batch_publishes_what_came_before_an_oversized_record(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    with pytest.raises(ValueError, match="max_record"):
        w.write_batch([b"ok", b"x" * 4000, b"never"])
    assert r.read_batch() == [b"ok"]


def test_read_batch_stops_at_max_records(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    assert w.write_batch([bytes([i]) for i in range(10)]) == 10
    assert r.read_batch(3) == [b"\0", b"\1", b"\2"]
    assert len(r.read_batch()) == 7


def test_read_batch_stops_after_max_bytes(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    assert w.write_batch([bytes([i]) * 100 for i in range(10)]) == 10  # 112 bytes each
    assert len(r.read_batch(max_bytes=300)) == 2
    assert len(r.read_batch(max_bytes=336)) == 3
    assert len(r.read_batch()) == 5


def test_read_batch_returns_one_record_larger_than_max_bytes(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    w.write_batch([b"a" * 1000, b"b" * 1000])
    assert r.read_batch(max_bytes=10) == [b"a" * 1000]
    assert r.read_batch(max_bytes=10) == [b"b" * 1000]


def test_high_water_tracks_the_deepest_read(small_ring: Ring) -> None:
    w, r = small_ring.writer(), small_ring.reader()
    w.write_batch([b"x" * 100] * 5)
    r.read_batch()
    w.try_write(b"y")
    r.read_batch()
    assert r.high_water_bytes == 5 * 112


def test_header_fields_sit_at_the_documented_offsets() -> None:
    with Ring.create(8192, generation=0x1122334455667788) as ring:
        w = ring.writer()
        w.try_write(b"abc")
        raw = os.pread(ring.fds()[0], HEADER_SIZE + 16, 0)
        assert os.fstat(ring.fds()[0]).st_size == HEADER_SIZE + 8192
    assert raw[0:8] == MAGIC
    assert struct.unpack_from("=IIQQ", raw, 8) == (VERSION, HEADER_SIZE, 8192, 0x1122334455667788)
    assert struct.unpack_from("=QQ", raw, 128) == (16, 0)  # head, producer_waiting
    assert struct.unpack_from("=QQ", raw, 256) == (0, 0)  # tail, consumer_sleeping
    assert struct.unpack_from("=II", raw, 512) == (3, KIND_DATA)
    assert raw[520:523] == b"abc"


def test_attach_sees_the_same_ring_and_generation(small_ring: Ring) -> None:
    other = Ring.attach(*(os.dup(fd) for fd in small_ring.fds()))
    try:
        assert other.generation == small_ring.generation == 7
        assert other.capacity == small_ring.capacity
        assert small_ring.writer().try_write(b"across")
        assert other.reader().read_batch() == [b"across"]
    finally:
        other.close()


def test_a_writer_attached_later_resumes_at_the_published_head(small_ring: Ring) -> None:
    small_ring.writer().try_write(b"first")
    other = Ring.attach(*(os.dup(fd) for fd in small_ring.fds()))
    try:
        other.writer().try_write(b"second")
        assert small_ring.reader().read_batch() == [b"first", b"second"]
    finally:
        other.close()


def test_a_ring_has_one_writer_and_one_reader(small_ring: Ring) -> None:
    small_ring.writer()
    small_ring.reader()
    with pytest.raises(RingError, match="writer"):
        small_ring.writer()
    with pytest.raises(RingError, match="reader"):
        small_ring.reader()


@pytest.mark.parametrize("capacity", [0, 2048, 4095, 6000, 1 << 31])
def test_create_refuses_a_capacity_that_is_not_a_power_of_two_in_range(capacity: int) -> None:
    with pytest.raises(RingError, match="capacity"):
        Ring.create(capacity)


def test_close_releases_the_fds_and_is_idempotent() -> None:
    ring = Ring.create(4096)
    fds = ring.fds()
    ring.close()
    ring.close()
    assert ring.closed
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    with pytest.raises(RingError, match="closed"):
        ring.fds()


def test_the_fds_are_close_on_exec(small_ring: Ring) -> None:
    assert not any(os.get_inheritable(fd) for fd in small_ring.fds())


def test_the_doorbells_are_non_blocking(small_ring: Ring) -> None:
    _, data_efd, space_efd = small_ring.fds()
    assert not os.get_blocking(data_efd)
    assert not os.get_blocking(space_efd)
