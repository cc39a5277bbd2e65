"""attach refuses what it cannot trust; the seals hold."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import tempfile
from collections.abc import Iterator

import pytest
from presence_b2b.ipc.memfd import create_sealed
from presence_b2b.ipc.ring import HEADER_SIZE, MAGIC, VERSION, Ring, RingError


def _raw_ring(capacity: int = 4096, *, seals: int | None = None, size: int | None = None) -> int:
    """A memfd with a ring header written by hand, sealed as asked."""
    fd = os.memfd_create("test-ring", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, HEADER_SIZE + capacity if size is None else size)
    os.pwrite(fd, MAGIC + struct.pack("=IIQQ", VERSION, HEADER_SIZE, capacity, 1), 0)
    if seals is None:
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


@pytest.fixture
def bells() -> Iterator[tuple[int, int]]:
    a = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    b = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    yield a, b
    for fd in (a, b):
        with contextlib.suppress(OSError):
            os.close(fd)


def _attach_refused(memfd: int, bells: tuple[int, int], match: str) -> None:
    try:
        with pytest.raises(RingError, match=match):
            Ring.attach(memfd, *bells)
    finally:
        os.close(memfd)


def test_a_sealed_ring_cannot_be_shrunk(small_ring: Ring) -> None:
    with pytest.raises(PermissionError) as info:
        os.ftruncate(small_ring.fds()[0], HEADER_SIZE)
    assert info.value.errno == errno.EPERM


def test_a_sealed_ring_cannot_be_grown(small_ring: Ring) -> None:
    memfd = small_ring.fds()[0]
    with pytest.raises(PermissionError):
        os.ftruncate(memfd, HEADER_SIZE + 8192)
    with pytest.raises(PermissionError):
        os.pwrite(memfd, b"x", HEADER_SIZE + 4096)


def test_the_seals_themselves_are_sealed(small_ring: Ring) -> None:
    with pytest.raises(PermissionError):
        fcntl.fcntl(small_ring.fds()[0], fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)


def test_create_sealed_seals_shrink_grow_and_seal() -> None:
    fd = create_sealed(8192)
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals == fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
    finally:
        os.close(fd)


def test_attach_accepts_a_well_formed_sealed_ring(bells: tuple[int, int]) -> None:
    ring = Ring.attach(_raw_ring(), *bells)
    assert ring.capacity == 4096
    assert ring.generation == 1
    ring.close()


def test_attach_refuses_an_unsealed_memfd(bells: tuple[int, int]) -> None:
    _attach_refused(_raw_ring(seals=0), bells, "not sealed against shrink\\|grow")


def test_attach_refuses_a_memfd_sealed_only_against_shrink(bells: tuple[int, int]) -> None:
    _attach_refused(_raw_ring(seals=fcntl.F_SEAL_SHRINK), bells, "not sealed against grow")


def test_attach_refuses_a_memfd_sealed_against_writes(bells: tuple[int, int]) -> None:
    seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    _attach_refused(_raw_ring(seals=seals), bells, "sealed against writes")


def test_attach_refuses_a_regular_file(bells: tuple[int, int]) -> None:
    with tempfile.TemporaryFile() as f:
        f.truncate(HEADER_SIZE + 4096)
        with pytest.raises(RingError, match="not a memfd"):
            Ring.attach(f.fileno(), *bells)


def test_attach_refuses_a_bad_magic(bells: tuple[int, int]) -> None:
    fd = _raw_ring(seals=0)
    os.pwrite(fd, b"NOTARING", 0)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    _attach_refused(fd, bells, "bad magic")


def test_attach_refuses_another_version(bells: tuple[int, int]) -> None:
    fd = _raw_ring(seals=0)
    os.pwrite(fd, struct.pack("=I", VERSION + 1), 8)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    _attach_refused(fd, bells, "unsupported ring version")


def test_attach_refuses_a_capacity_that_is_not_a_power_of_two(bells: tuple[int, int]) -> None:
    fd = _raw_ring(capacity=6144)
    _attach_refused(fd, bells, "capacity 6144 is not a power of two")


def test_attach_refuses_a_size_that_does_not_match_the_capacity(bells: tuple[int, int]) -> None:
    fd = _raw_ring(capacity=4096, size=HEADER_SIZE + 8192)
    _attach_refused(fd, bells, "does not match")


def test_attach_refuses_a_file_too_small_for_any_ring(bells: tuple[int, int]) -> None:
    fd = _raw_ring(size=HEADER_SIZE + 100)
    _attach_refused(fd, bells, "outside")


def test_attach_refuses_a_doorbell_that_is_not_an_eventfd(bells: tuple[int, int]) -> None:
    r, w = os.pipe()
    try:
        _attach_refused(_raw_ring(), (r, bells[1]), "not an eventfd")
    finally:
        os.close(r)
        os.close(w)


def test_attach_makes_a_blocking_doorbell_non_blocking() -> None:
    data, space = os.eventfd(0), os.eventfd(0)
    ring = Ring.attach(_raw_ring(), data, space)
    try:
        assert not os.get_blocking(data)
        assert not os.get_blocking(space)
    finally:
        ring.close()
