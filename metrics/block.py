"""Per-process counters in a shared-memory block that outlives the process.

The supervisor creates one block per shard (and one for itself) *before* it
forks: an anonymous memory file (``memfd_create``), sealed against resizing and
mapped shared. A shard inherits the mapping and counts straight into it; the
supervisor's collector reads it at scrape time. Because the block belongs to
the supervisor, a shard that dies and is forked again continues from the
values its predecessor left, so counters stay monotonic without any per-pid
file or aggregation step.

Layout: a 64-byte header (magic, version, slot count, a fingerprint of the
catalogue) followed by float64 slots, one per series in catalogue order;
a histogram series takes one slot per bucket (not cumulative), one for +Inf
and one for the sum. The count is the sum of the bucket slots, so ``_count``
and the buckets always agree. A float64 holds integers exactly up to 2**53.

Writes are plain aligned 8-byte stores through a ``memoryview``: no lock and
no system call. Each slot has a single writer (the shard, or the supervisor
for the two ``shard_*`` families), and an aligned 8-byte store is not torn on
x86-64 or arm64, so a concurrent reader sees the old or the new value.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Protocol, cast

from .catalog import CATALOG, Family

__all__ = ["HEADER_SIZE", "LAYOUT", "BlockError", "FloatSlots", "Layout", "MetricsBlock"]

MAGIC = b"PB2BMETR"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sII16s")  # magic, version, slot count, fingerprint
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW


class FloatSlots(Protocol):
    """What a block's ``memoryview.cast("d")`` is; typeshed types memoryview items as int."""

    def __getitem__(self, index: int, /) -> float: ...
    def __setitem__(self, index: int, value: float, /) -> None: ...


class BlockError(Exception):
    """A memory file that is not a metrics block of this catalogue."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each family's series live in a block; derived from the catalogue only."""

    base: dict[str, int]
    slots: int
    fingerprint: bytes

    @classmethod
    def of(cls, families: tuple[Family, ...]) -> Layout:
        base: dict[str, int] = {}
        digest = hashlib.blake2b(digest_size=16)
        n = 0
        for f in families:
            base[f.name] = n
            if f.source == "block":
                n += f.series_count * f.slots_per_series
            digest.update(repr((f.name, f.type, f.label_names, f.buckets, f.source)).encode())
            for lb in f.labels:
                digest.update(repr(lb.values).encode())
        return cls(base, n, digest.digest())

    def slot(self, family: Family, values: tuple[str, ...]) -> int:
        """First slot of one series; ValueError naming the label for a value not allowed."""
        if family.source != "block":
            raise ValueError(f"{family.full_name}: measured by the collector, not counted")
        if len(values) != len(family.labels):
            raise ValueError(
                f"{family.full_name}: expected labels ({', '.join(family.label_names)}),"
                f" got {len(values)} value(s)"
            )
        index = 0
        for lb, value in zip(family.labels, values, strict=True):
            try:
                index = index * len(lb.values) + lb.index(value)
            except ValueError as exc:
                raise ValueError(f"{family.full_name}: {exc}") from None
        return self.base[family.name] + index * family.slots_per_series

    @property
    def size(self) -> int:
        """Bytes of the memory file, rounded up to whole pages."""
        raw = HEADER_SIZE + 8 * self.slots
        return -(-raw // mmap.PAGESIZE) * mmap.PAGESIZE


LAYOUT = Layout.of(CATALOG)


class MetricsBlock:
    """One process's slots. Create in the supervisor, before fork; keep across respawns."""

    __slots__ = ("_fd", "_map", "_mv", "_writer", "label", "layout", "view")

    def __init__(self, fd: int, label: str, layout: Layout = LAYOUT) -> None:
        """Map an existing block (ours or one handed over) after checking it."""
        st = os.fstat(fd)
        if st.st_size != layout.size:
            raise BlockError(f"metrics block is {st.st_size} bytes, expected {layout.size}")
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError as exc:
            raise BlockError(f"metrics block is not a memfd: {exc}") from None
        if seals & _SEALS != _SEALS:
            raise BlockError("metrics block is not sealed against resizing")
        self._fd = fd
        self._map = mmap.mmap(fd, layout.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        header = _HEADER.unpack_from(self._map, 0)
        if header != (MAGIC, VERSION, layout.slots, layout.fingerprint):
            self._map.close()
            raise BlockError("metrics block was written for another catalogue")
        self.label = label
        self.layout = layout
        self._writer = 0
        end = HEADER_SIZE + 8 * layout.slots
        self._mv = memoryview(self._map)[HEADER_SIZE:end].cast("d")
        #: The float64 slots; writers index it directly.
        self.view: FloatSlots = cast("FloatSlots", self._mv)

    @classmethod
    def create(cls, label: str, layout: Layout = LAYOUT) -> MetricsBlock:
        """A fresh zeroed block for the process whose ``shard`` label is ``label``."""
        fd = os.memfd_create(
            f"presence-b2b-metrics-{label}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
        )
        try:
            os.ftruncate(fd, layout.size)
            with mmap.mmap(fd, layout.size, mmap.MAP_SHARED) as m:
                _HEADER.pack_into(m, 0, MAGIC, VERSION, layout.slots, layout.fingerprint)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS | fcntl.F_SEAL_SEAL)
            return cls(fd, label, layout)
        except BaseException:
            os.close(fd)
            raise

    def claim(self) -> None:
        """Refuse a second buffered writer in one process: its flushes would clobber the first's."""
        pid = os.getpid()
        if self._writer == pid:
            raise RuntimeError(f"metrics block {self.label!r} already has a writer in this process")
        self._writer = pid

    def fileno(self) -> int:
        """For handing the block to a process that is exec'd rather than forked."""
        return self._fd

    def snapshot(self) -> list[float]:
        """Every slot, copied in one C loop so a scrape sees one near-instant picture."""
        return cast("list[float]", self._mv.tolist())

    def reset_gauges(self) -> None:
        """Zero the gauges a dead shard left behind; counters keep counting on."""
        view = self.view
        for f in CATALOG:
            if f.type != "gauge" or f.source != "block" or f.supervisor_owned:
                continue
            start = self.layout.base[f.name]
            for i in range(start, start + f.series_count * f.slots_per_series):
                view[i] = 0.0

    def close(self) -> None:
        """Unmap and close; only the owner does this, and only at shutdown."""
        try:
            self._mv.release()
            self._map.close()
        except BufferError:
            # A child still holds a view; the mapping goes when the process does.
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
