"""Single-producer single-consumer byte-record ring in shared memory.

One ring per producer and direction. The ring moves opaque byte records; what
they mean is the business of the layer above. ``docs/ring-layout.md`` is the
normative description (precise enough for a C peer); this is a summary.

Layout of the memfd (all integers in host byte order, little-endian on
x86-64; both ends run on one host)::

    offset  size  field              written by
    0       8     magic "PB2BRING"   creator, once
    8       4     version (1)        creator, once
    12      4     header_size (512)  creator, once
    16      8     capacity           creator, once (power of two, >= 4096)
    24      8     generation         creator, once
    32     96     reserved (0)
    128     8     head               producer   (free-running byte counter)
    136     8     producer_waiting   producer   (nonzero: blocked on a full ring)
    144   112     reserved (0)
    256     8     tail               consumer   (free-running byte counter)
    264     8     consumer_sleeping  consumer   (nonzero: about to wait for data)
    272   240     reserved (0)
    512   cap     data area

head and tail count bytes since the ring was created and never wrap (2**64
bytes is centuries); the position in the data area is ``counter & (cap - 1)``.
``head - tail`` is the number of bytes in use: 0 is empty, ``cap`` is full.
The producer's line and the consumer's line are 128 bytes apart, so they never
share a cache line (nor an adjacent-line prefetch pair).

Every record starts at an 8-byte aligned position with an 8-byte header:
``u32 length`` (payload bytes) then ``u32 kind`` (1 data, 2 padding), followed
by the payload and zero to seven bytes of slack up to the next multiple of 8.
A data record never straddles the end of the data area: when it does not fit
in the bytes left before the end, the producer first writes a padding record
whose length is exactly the rest of the area minus its 8-byte header and
continues at position 0.

Memory ordering: the producer writes the record (header and payload), then
publishes ``head`` with one aligned 8-byte store; the consumer reads ``head``
before any record byte, copies records out, then publishes ``tail``. On x86-64
(TSO) stores are not reordered with stores nor loads with loads, and CPython
makes no reordering across its C calls, so plain memoryview stores and loads
are enough for that. The doorbell protocol needs a store->load barrier (publish
my counter, then read the peer's flag, and the reverse on the other side);
a ``threading.Lock`` acquire/release pair is a locked instruction on CPython,
hence a full fence. Other architectures (arm64, POWER) would need acquire/
release ordering on the counters, which needs a small native helper.

The consumer trusts nothing in the shared memory: it keeps its own tail,
checks ``tail <= head <= tail + cap`` and alignment on every read, checks each
record's kind, length and extent, copies each record out before returning it,
and on a malformed record skips to ``head`` and counts it. Counters that make
no sense mark the ring broken (:class:`RingBroken`) rather than being chased.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from mmap import mmap
from typing import Final

from .doorbell import Doorbell, DoorbellError
from .memfd import MemfdError, check_sealed, create_sealed, map_shared

__all__ = [
    "CAPACITY_MAX",
    "CAPACITY_MIN",
    "DATA_OFFSET",
    "HEADER_SIZE",
    "KIND_DATA",
    "KIND_PAD",
    "MAGIC",
    "VERSION",
    "Ring",
    "RingBroken",
    "RingError",
    "RingFull",
    "RingReader",
    "RingWriter",
    "record_size",
]

log = logging.getLogger(__name__)

MAGIC: Final = b"PB2BRING"
VERSION: Final = 1
HEADER_SIZE: Final = 512
CAPACITY_MIN: Final = 4096
CAPACITY_MAX: Final = 1 << 30

OFF_MAGIC: Final = 0
OFF_VERSION: Final = 8
OFF_HEADER_SIZE: Final = 12
OFF_CAPACITY: Final = 16
OFF_GENERATION: Final = 24
OFF_HEAD: Final = 128
OFF_PRODUCER_WAITING: Final = 136
OFF_TAIL: Final = 256
OFF_CONSUMER_SLEEPING: Final = 264
DATA_OFFSET: Final = HEADER_SIZE

RECORD_HEADER: Final = 8
KIND_DATA: Final = 1
KIND_PAD: Final = 2

# Indices into the ring viewed as an array of u64.
_W_HEAD: Final = OFF_HEAD >> 3
_W_WAITING: Final = OFF_PRODUCER_WAITING >> 3
_W_TAIL: Final = OFF_TAIL >> 3
_W_SLEEPING: Final = OFF_CONSUMER_SLEEPING >> 3
_W_DATA: Final = DATA_OFFSET >> 3

_DATA_HDR: Final = KIND_DATA << 32
_PAD_HDR: Final = KIND_PAD << 32
_LOW32: Final = 0xFFFFFFFF
_U64: Final = (1 << 64) - 1

Payload = bytes | bytearray | memoryview


class RingError(Exception):
    """A ring cannot be created, attached or used as asked."""


class RingFull(RingError):  # noqa: N818 (public name other layers use)
    """No room for the record within the time allowed."""


class RingBroken(RingError):  # noqa: N818 (public name other layers use)
    """The peer corrupted the shared counters; the ring is unusable from now on."""


def record_size(payload_len: int) -> int:
    """Bytes a payload of ``payload_len`` takes in the data area (header + 8-byte alignment)."""
    return (payload_len + RECORD_HEADER + 7) & ~7


def _as_bytes_view(payload: Payload) -> bytes | memoryview:
    """A flat byte view of ``payload``, so its length is its size in bytes."""
    if type(payload) is bytes:
        return payload
    view = memoryview(payload)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _fence() -> Callable[[], None]:
    """A full memory barrier: a lock acquire/release is a locked instruction on CPython."""
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release

    def fence() -> None:
        acquire()
        release()

    return fence


class Ring:
    """The shared mapping and the two doorbells of one ring; owns all three fds.

    Make one with :meth:`create` (the creator's side) or :meth:`attach` (fds
    received from a peer), then a :class:`RingWriter` or a :class:`RingReader`
    on it. The fds from :meth:`fds` are for passing with SCM_RIGHTS; the
    receiving process gets its own copies.
    """

    __slots__ = (
        "_bytes_view",
        "_capacity",
        "_closed",
        "_data_bell",
        "_generation",
        "_memfd",
        "_mm",
        "_reader",
        "_space_bell",
        "_words",
        "_writer",
    )

    def __init__(
        self,
        *,
        memfd: int,
        mm: mmap,
        data_bell: Doorbell,
        space_bell: Doorbell,
        capacity: int,
        generation: int,
    ) -> None:
        self._memfd = memfd
        self._mm = mm
        self._bytes_view = memoryview(mm)
        self._words = self._bytes_view.cast("Q")
        self._data_bell = data_bell
        self._space_bell = space_bell
        self._capacity = capacity
        self._generation = generation
        self._closed = False
        self._writer: RingWriter | None = None
        self._reader: RingReader | None = None

    @classmethod
    def create(cls, capacity: int, *, generation: int | None = None) -> Ring:
        """A new, empty ring with a ``capacity``-byte data area (power of two, >= 4096).

        ``generation`` tells incarnations apart (e.g. a ring re-made after a
        restart); a random 64-bit value by default.
        """
        _check_capacity(capacity)
        if generation is None:
            generation = int.from_bytes(os.urandom(8), "little")
        if not 0 <= generation <= _U64:
            raise ValueError(f"generation {generation} does not fit in 64 bits")
        memfd = create_sealed(HEADER_SIZE + capacity)
        bells: list[Doorbell] = []
        try:
            mm = map_shared(memfd, HEADER_SIZE + capacity)
            mm[OFF_MAGIC : OFF_MAGIC + 8] = MAGIC
            words = memoryview(mm).cast("I")
            words[OFF_VERSION >> 2] = VERSION
            words[OFF_HEADER_SIZE >> 2] = HEADER_SIZE
            words.release()
            words = memoryview(mm).cast("Q")
            words[OFF_CAPACITY >> 3] = capacity
            words[OFF_GENERATION >> 3] = generation
            words.release()
            bells.append(Doorbell.create())
            bells.append(Doorbell.create())
        except BaseException:
            for bell in bells:
                bell.close()
            os.close(memfd)
            raise
        return cls(
            memfd=memfd,
            mm=mm,
            data_bell=bells[0],
            space_bell=bells[1],
            capacity=capacity,
            generation=generation,
        )

    @classmethod
    def attach(cls, memfd: int, data_efd: int, space_efd: int) -> Ring:
        """Attach a ring made by a peer, after checking everything about it.

        Refuses, with :class:`RingError` naming the problem: a fd that is not
        a memfd, a memfd not sealed against shrink and grow, a wrong size, a
        bad magic, version, header size or capacity, doorbells that are not
        eventfds. On success the ring owns the three fds; on failure the
        caller still does.
        """
        try:
            size = check_sealed(memfd, HEADER_SIZE + CAPACITY_MIN, HEADER_SIZE + CAPACITY_MAX)
            mm = map_shared(memfd, size)
        except MemfdError as exc:
            raise RingError(str(exc)) from exc
        try:
            magic = mm[OFF_MAGIC : OFF_MAGIC + 8]
            if magic != MAGIC:
                raise RingError(f"bad magic {magic!r} (expected {MAGIC!r})")
            words32 = memoryview(mm).cast("I")
            version = words32[OFF_VERSION >> 2]
            header_size = words32[OFF_HEADER_SIZE >> 2]
            words32.release()
            if version != VERSION:
                raise RingError(f"unsupported ring version {version} (expected {VERSION})")
            if header_size != HEADER_SIZE:
                raise RingError(f"bad header size {header_size} (expected {HEADER_SIZE})")
            words = memoryview(mm).cast("Q")
            capacity = words[OFF_CAPACITY >> 3]
            generation = words[OFF_GENERATION >> 3]
            words.release()
            _check_capacity(capacity)
            if size != HEADER_SIZE + capacity:
                raise RingError(
                    f"memfd size {size} does not match header {HEADER_SIZE} + capacity {capacity}"
                )
            try:
                data_bell = Doorbell.adopt(data_efd)
                space_bell = Doorbell.adopt(space_efd)
            except DoorbellError as bell_error:
                raise RingError(f"doorbell: {bell_error}") from bell_error
        except BaseException:
            mm.close()
            raise
        return cls(
            memfd=memfd,
            mm=mm,
            data_bell=data_bell,
            space_bell=space_bell,
            capacity=capacity,
            generation=generation,
        )

    @property
    def capacity(self) -> int:
        """Size of the data area in bytes."""
        return self._capacity

    @property
    def generation(self) -> int:
        """The incarnation number written by the creator."""
        return self._generation

    @property
    def max_record(self) -> int:
        """Largest payload accepted: a record of it always fits into an empty ring."""
        return self._capacity // 2 - RECORD_HEADER

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def fds(self) -> tuple[int, int, int]:
        """(memfd, data_efd, space_efd), still owned by this ring, for SCM_RIGHTS."""
        if self._closed:
            raise RingError("ring is closed")
        return self._memfd, self._data_bell.fd, self._space_bell.fd

    def writer(self) -> RingWriter:
        """The producer side (one per ring)."""
        return RingWriter(self)

    def reader(self) -> RingReader:
        """The consumer side (one per ring)."""
        return RingReader(self)

    def close(self) -> None:
        """Detach an attached reader, unmap, and close the three fds (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.detach()
        self._words.release()
        self._bytes_view.release()
        self._mm.close()
        self._data_bell.close()
        self._space_bell.close()
        os.close(self._memfd)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"memfd={self._memfd}"
        return f"<Ring capacity={self._capacity} generation={self._generation:#x} {state}>"


def _check_capacity(capacity: int) -> None:
    if not (CAPACITY_MIN <= capacity <= CAPACITY_MAX and capacity & (capacity - 1) == 0):
        raise RingError(
            f"capacity {capacity} is not a power of two in [{CAPACITY_MIN}, {CAPACITY_MAX}]"
        )


class RingWriter:
    """Producer side. Not thread-safe: one producer, by design.

    Records become visible to the consumer only when ``head`` is published,
    which happens after their bytes are written: a producer killed half way
    leaves nothing partial behind.
    """

    __slots__ = (
        "_async_lock",
        "_async_waiters",
        "_bell_later",
        "_broken",
        "_cap",
        "_data_bell",
        "_fence",
        "_head",
        "_mask",
        "_max",
        "_mm",
        "_owed",
        "_ring",
        "_space_bell",
        "_tail",
        "_w",
    )

    def __init__(self, ring: Ring) -> None:
        if ring._closed:
            raise RingError("ring is closed")
        if ring._writer is not None:
            raise RingError("this ring already has a writer")
        w = ring._words
        head, tail = w[_W_HEAD], w[_W_TAIL]
        cap = ring.capacity
        if head & 7 or tail & 7 or not tail <= head <= tail + cap:
            raise RingBroken(f"cannot write: counters head={head} tail={tail} make no sense")
        ring._writer = self
        self._ring = ring
        self._mm = ring._mm
        self._w = w
        self._cap = cap
        self._mask = cap - 1
        self._max = ring.max_record
        self._head = head
        self._tail = tail
        self._fence = _fence()
        self._data_bell = ring._data_bell
        self._space_bell = ring._space_bell
        self._broken = False
        self._async_lock: asyncio.Lock | None = None
        self._async_waiters = 0
        self._bell_later: Callable[[Callable[[], None]], object] | None = None
        self._owed = False

    @property
    def ring(self) -> Ring:
        """The ring written to."""
        return self._ring

    def ring_later(self, schedule: Callable[[Callable[[], None]], object] | None) -> None:
        """Wake a sleeping consumer once per call of ``schedule`` instead of once
        per publish. ``schedule(fn)`` must run ``fn`` soon: an event loop's
        ``call_soon``, so that every record published in one turn of the loop
        costs the consumer one wake-up and the producer one eventfd write (a
        system call that was a fifth of a shard's time at 6 500 statuses/s).
        None rings at once again."""
        self._bell_later = schedule

    def _wake(self) -> None:
        """After a publish: ring a sleeping consumer now, or owe it the ring."""
        later = self._bell_later
        if later is None:
            if self._w[_W_SLEEPING]:
                self._data_bell.ring()
        elif not self._owed:
            self._owed = True
            later(self._ring_owed)

    def _ring_owed(self) -> None:
        """The deferred doorbell: ring if the consumer sleeps now. The head was
        published and fenced before, so a consumer that went to sleep since
        then saw it and did not sleep."""
        self._owed = False
        if self._broken or self._ring._closed:
            return
        if self._w[_W_SLEEPING]:
            self._data_bell.ring()

    @property
    def max_record(self) -> int:
        """Largest payload accepted."""
        return self._max

    def _refresh_tail(self) -> int:
        """Re-read the consumer's tail, refusing one that moved backwards or past head."""
        if self._broken:
            raise RingBroken("ring is broken")
        tail = self._w[_W_TAIL]
        if tail & 7 or not self._tail <= tail <= self._head:
            self._broken = True
            raise RingBroken(
                f"consumer published tail={tail} (was {self._tail}, head={self._head})"
            )
        self._tail = tail
        return tail

    def depth_bytes(self) -> int:
        """Bytes written and not yet consumed (headers and padding included)."""
        return self._head - self._refresh_tail()

    def free_bytes(self) -> int:
        """Bytes free in the data area (a record may need more, for padding at the wrap)."""
        return self._cap - self.depth_bytes()

    def try_write(self, payload: Payload) -> bool:
        """Append one record and publish it; False (nothing written) if it does not fit."""
        if type(payload) is not bytes:
            payload = _as_bytes_view(payload)
        n = len(payload)
        if n > self._max:
            raise ValueError(f"record of {n} bytes exceeds max_record {self._max}")
        if self._broken:
            raise RingBroken("ring is broken")
        size = (n + 15) & ~7
        head = self._head
        cap = self._cap
        pos = head & self._mask
        room = cap - pos
        need = size if size <= room else room + size
        if head + need - self._tail > cap and head + need - self._refresh_tail() > cap:
            return False
        w = self._w
        if size > room:
            w[_W_DATA + (pos >> 3)] = _PAD_HDR | (room - 8)
            head += room
            pos = 0
        w[_W_DATA + (pos >> 3)] = _DATA_HDR | n
        off = DATA_OFFSET + 8 + pos
        self._mm[off : off + n] = payload
        head += size
        self._head = head
        w[_W_HEAD] = head
        self._fence()
        later = self._bell_later  # _wake() inlined: one call less per record
        if later is None:
            if w[_W_SLEEPING]:
                self._data_bell.ring()
        elif not self._owed:
            self._owed = True
            later(self._ring_owed)
        return True

    def write_batch(self, payloads: Iterable[Payload]) -> int:
        """Append as many records as fit, in order; publish head and ring at most once.

        Returns how many were written (a prefix of ``payloads``). A payload
        over ``max_record`` raises ValueError after the ones before it are
        published.
        """
        if self._broken:
            raise RingBroken("ring is broken")
        w = self._w
        mm = self._mm
        cap = self._cap
        maxrec = self._max
        data_end = DATA_OFFSET + cap
        # Hot loop state: ``off`` is where the next record goes (offset in the
        # mapping); ``stop`` bounds it by the end of the data area and by the
        # free space known from the cached tail. ``head`` is the counter at
        # ``base``, so the counter at ``off`` is ``head + off - base``.
        head = self._head
        limit = self._tail + cap
        off = base = DATA_OFFSET + (head & self._mask)
        stop = min(data_end, off + limit - head)
        count = 0
        too_big = -1
        it = iter(payloads)
        while True:
            pending: bytes | memoryview | None = None
            for payload in it:
                if type(payload) is not bytes:
                    payload = _as_bytes_view(payload)  # noqa: PLW2901
                n = len(payload)
                end = off + ((n + 15) & ~7)
                if end > stop or n > maxrec:
                    pending = payload
                    break
                w[off >> 3] = _DATA_HDR | n
                mm[off + 8 : off + 8 + n] = payload
                off = end
                count += 1
            if pending is None:
                break
            # Slow path, one record: too big, the wrap, or the cached tail is stale.
            head += off - base
            n = len(pending)
            if n > maxrec:
                too_big = n
                base = off
                break
            size = (n + 15) & ~7
            room = data_end - off
            if room == 0:
                off, room = DATA_OFFSET, cap
            need = size if size <= room else room + size
            if head + need > limit:
                self._head = head
                limit = self._refresh_tail() + cap
                if head + need > limit:
                    base = off
                    break
            if size > room:
                w[off >> 3] = _PAD_HDR | (room - 8)
                head += room
                off = DATA_OFFSET
            w[off >> 3] = _DATA_HDR | n
            mm[off + 8 : off + 8 + n] = pending
            off += size
            head += size
            count += 1
            base = off
            stop = min(data_end, off + limit - head)
        head += off - base
        if count:
            self._head = head
            w[_W_HEAD] = head
            self._fence()
            self._wake()
        if too_big >= 0:
            raise ValueError(f"record of {too_big} bytes exceeds max_record {maxrec}")
        return count

    def _announce_waiting(self) -> bool:
        """Set the waiting flag, fence, and recheck: True if the consumer freed space meanwhile."""
        w = self._w
        w[_W_WAITING] = 1
        self._fence()
        before = self._tail
        if self._refresh_tail() != before:
            w[_W_WAITING] = 0
            return True
        return False

    def wait_for_space(self, timeout: float | None) -> bool:
        """Block until the consumer frees some space (tail moves) or ``timeout`` passes.

        Returns False on timeout. The caller then retries its write; a single
        wake-up may not free enough room for a large record.
        """
        if self._announce_waiting():
            return True
        try:
            return self._space_bell.wait(timeout)
        finally:
            self._w[_W_WAITING] = 0

    def write_blocking(self, payload: Payload, timeout: float | None) -> None:
        """Append one record, waiting for room up to ``timeout`` seconds; RingFull after."""
        if self.try_write(payload):
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise RingFull(f"no room for the record after {timeout} s")
            self.wait_for_space(remaining)
            if self.try_write(payload):
                return

    async def write(self, payload: Payload, timeout: float | None = None) -> None:
        """Append one record, awaiting room (backpressure) up to ``timeout``; RingFull after.

        Concurrent callers are served in order.
        """
        if not self._async_waiters and self.try_write(payload):
            return
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._async_waiters += 1
        try:
            async with self._async_lock:
                while not self.try_write(payload):
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        raise RingFull(f"no room for the record after {timeout} s")
                    await self._await_space(loop, remaining)
        finally:
            self._async_waiters -= 1

    async def _await_space(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        """Wait on the space-free doorbell through the event loop."""
        if self._announce_waiting():
            return
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        fd = self._space_bell.fd
        loop.add_reader(fd, ready)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            _remove_reader(loop, fd)
            self._space_bell.drain()
            self._w[_W_WAITING] = 0



def _remove_reader(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """uvloop's remove_reader returns None where asyncio's signature says bool, and
    compiled code checks declared return types; so the result is taken as object."""
    remove: Callable[[int], object] = loop.remove_reader
    remove(fd)


class RingReader:
    """Consumer side. Not thread-safe: one consumer, by design.

    Counters exposed as plain attributes: ``records_read``, ``bad_records``
    (malformed records skipped), ``high_water_bytes`` (the deepest the ring
    was seen at a read), ``wakeups`` (data-ready doorbells answered).
    """

    __slots__ = (
        "_bell_rung",
        "_callback",
        "_cap",
        "_data_bell",
        "_fence",
        "_loop",
        "_mask",
        "_max",
        "_max_batches",
        "_max_bytes",
        "_max_records",
        "_mm",
        "_on_broken",
        "_ring",
        "_scheduled",
        "_space_bell",
        "_tail",
        "_w",
        "bad_records",
        "broken",
        "high_water_bytes",
        "records_read",
        "wakeups",
    )

    def __init__(self, ring: Ring) -> None:
        if ring._closed:
            raise RingError("ring is closed")
        if ring._reader is not None:
            raise RingError("this ring already has a reader")
        w = ring._words
        tail = w[_W_TAIL]
        if tail & 7:
            raise RingBroken(f"cannot read: tail={tail} is not 8-byte aligned")
        ring._reader = self
        self._ring = ring
        self._mm = ring._mm
        self._w = w
        self._cap = ring.capacity
        self._mask = ring.capacity - 1
        self._max = ring.max_record
        self._tail = tail
        self._fence = _fence()
        self._data_bell = ring._data_bell
        self._space_bell = ring._space_bell
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callback: Callable[[list[bytes]], None] | None = None
        self._on_broken: Callable[[RingBroken], None] | None = None
        self._scheduled = False
        self._bell_rung = False
        self._max_batches = 16
        self._max_records = 1024
        self._max_bytes = 65536
        self.records_read = 0
        self.bad_records = 0
        self.high_water_bytes = 0
        self.wakeups = 0
        self.broken: str | None = None

    @property
    def ring(self) -> Ring:
        """The ring read from."""
        return self._ring

    def _break(self, why: str) -> RingBroken:
        self.broken = why
        log.error("ring generation %#x broken: %s", self._ring.generation, why)
        return RingBroken(why)

    def depth_bytes(self) -> int:
        """Bytes published by the producer and not yet read (unchecked snapshot)."""
        return self._w[_W_HEAD] - self._tail

    def read_batch(self, max_records: int = 1024, max_bytes: int = 65536) -> list[bytes]:
        """Copy out up to ``max_records`` records, publish tail once, ring space-free if needed.

        Stops early once about ``max_bytes`` of records were copied (always
        returning at least one record if there is one): a batch that frees
        much memory at once makes malloc hand it back to the kernel, and the
        next batch page-faults it all in again.

        Returns [] when the ring is empty. Malformed records are skipped up to
        head and counted in ``bad_records``; counters that make no sense raise
        :class:`RingBroken`, now and on every later call.
        """
        if self.broken is not None:
            raise RingBroken(self.broken)
        w = self._w
        head = w[_W_HEAD]
        tail = self._tail
        if head == tail:
            return []
        cap = self._cap
        avail = head - tail
        if avail < 0 or avail > cap or head & 7:
            raise self._break(f"producer published head={head} with tail={tail}, capacity={cap}")
        self.high_water_bytes = max(self.high_water_bytes, avail)
        mm = self._mm
        maxrec = self._max
        out: list[bytes] = []
        append = out.append
        left = max_records
        budget = max_bytes
        pos = tail & self._mask
        while left:
            # Records from ``pos`` up to the end of the data area or head
            # (``hard``), or the byte budget (``stop``), whichever is first.
            off = start = DATA_OFFSET + pos
            hard = off + min(cap - pos, avail)
            stop = min(hard, off + budget)
            while off < stop:
                n = w[off >> 3] - _DATA_HDR  # in [0, maxrec] only for a data record
                if 0 <= n <= maxrec:
                    end = off + ((n + 15) & ~7)
                    if end <= stop:
                        append(mm[off + 8 : off + 8 + n])
                        off = end
                        left -= 1
                        if left:
                            continue
                break
            tail += off - start
            avail -= off - start
            budget -= off - start
            if not avail or not left:
                break
            pos = tail & self._mask
            if off == hard:
                continue  # at the end of the data area: go on from position 0
            hdr = w[off >> 3]
            n = hdr & _LOW32
            kind = hdr >> 32
            if kind == KIND_DATA and n <= maxrec and pos + ((n + 15) & ~7) <= min(cap, avail + pos):
                if not out:  # a record larger than the whole budget
                    append(mm[off + 8 : off + 8 + n])
                    tail += (n + 15) & ~7
                break
            if kind == KIND_PAD and n == cap - pos - 8 and cap - pos <= avail:
                tail += cap - pos
                avail -= cap - pos
                pos = 0
                if avail:
                    continue
                break
            # Malformed: where the next record starts is unknowable; drop what is published.
            self.bad_records += 1
            if self.bad_records & (self.bad_records - 1) == 0:  # 1, 2, 4, ...: no log flood
                log.warning(
                    "ring generation %#x: bad record #%d (kind=%d length=%d at %d); "
                    "%d bytes skipped",
                    self._ring.generation,
                    self.bad_records,
                    kind,
                    n,
                    pos,
                    avail,
                )
            tail = head
            break
        self._tail = tail
        w[_W_TAIL] = tail
        self._fence()
        if w[_W_WAITING]:
            self._space_bell.ring()
        self.records_read += len(out)
        return out

    def prepare_sleep(self) -> bool:
        """Announce sleep, fence, recheck. False: data arrived meanwhile, read again first.

        After True, the producer rings the data-ready doorbell on its next
        publish, so waiting on that doorbell cannot miss a record.
        """
        w = self._w
        w[_W_SLEEPING] = 1
        self._fence()
        if w[_W_HEAD] != self._tail:
            w[_W_SLEEPING] = 0
            return False
        return True

    def read_blocking(
        self, timeout: float | None, max_records: int = 1024, max_bytes: int = 65536
    ) -> list[bytes]:
        """Wait up to ``timeout`` seconds for records; [] on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.read_batch(max_records, max_bytes)
            if batch:
                return batch
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            if self.prepare_sleep():
                if self._data_bell.wait(remaining):
                    self.wakeups += 1
                self._w[_W_SLEEPING] = 0

    def attach_reader(
        self,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[list[bytes]], None],
        *,
        on_broken: Callable[[RingBroken], None] | None = None,
        max_records: int = 1024,
        max_bytes: int = 65536,
        max_batches: int = 16,
    ) -> None:
        """Drain the ring from ``loop``: ``callback(batch)`` for every non-empty batch.

        Registers the data-ready eventfd with ``loop.add_reader``. A wake-up
        reads at most ``max_batches`` batches before yielding to other tasks.
        If the ring breaks, the reader detaches and ``on_broken`` is called
        (the error is logged either way).
        """
        if self._loop is not None:
            raise RingError("reader already attached to a loop")
        self._loop = loop
        self._callback = callback
        self._on_broken = on_broken
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._max_batches = max_batches
        loop.add_reader(self._data_bell.fd, self._on_doorbell)
        self._schedule()

    def detach(self) -> None:
        """Stop draining from the event loop (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            _remove_reader(loop, self._data_bell.fd)
        self._callback = None
        self._on_broken = None

    def _schedule(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _on_doorbell(self) -> None:
        # Deliver first and reset the eventfd afterwards, just before going
        # back to sleep: the read syscall stays off the latency path. Safe,
        # because prepare_sleep rechecks head after the reset.
        self.wakeups += 1
        self._bell_rung = True
        self._w[_W_SLEEPING] = 0
        self._drain()

    def _drain(self) -> None:
        self._scheduled = False
        done = False
        try:
            for _ in range(self._max_batches):
                callback = self._callback
                if callback is None:
                    done = True
                    return
                batch = self.read_batch(self._max_records, self._max_bytes)
                if batch:
                    callback(batch)
                    continue
                if self._bell_rung:
                    self._bell_rung = False
                    self._data_bell.drain()
                    continue  # read once more after the reset, then sleep
                if self.prepare_sleep():
                    done = True
                    return
        except RingBroken as exc:
            done = True
            on_broken = self._on_broken
            self.detach()
            if on_broken is not None:
                on_broken(exc)
        finally:
            # Still work to do, or the callback raised: come back soon rather
            # than wait for a doorbell nobody will ring.
            if not done:
                self._schedule()
