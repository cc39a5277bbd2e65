"""A map from ids handed out in order to bytes values, packed into page blobs.

Tables of one small record per subscription (the supervisor's registry entry,
a shard's subscription at rest) kept each record as a bytes object of its
own: 33 bytes of header, up to 15 of pymalloc's rounding and an 8-byte slot,
~55 bytes around a record of 70 to 200. Worse, each record sits in a pool
among the transient objects made while it was written, and when those are
freed the pool can be returned neither to the arena nor to the system.

Here the values of 64 consecutive ids (the pages of :class:`IdMap`) share
one ``bytearray`` (each value behind its length) and the page keeps the
start of each in an ``array``: ~6 bytes per value and ~7 for its share of
the page. The blobs are larger than pymalloc's largest block, so the C
allocator keeps them apart from the small objects. A value replaced or
removed leaves its bytes dead in the blob until they are a quarter of it;
then the page is rewritten without them. (At a half, a refresh wave that
wakes and rests every subscription once would leave each page exactly half
dead, twice its size, and nothing rewritten.)

:meth:`PackedIdMap.get` copies a value out; nothing hands out a view into a
blob that a later write could move.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from .id_map import PAGE as _PAGE
from .id_map import PAGE_BITS as _PAGE_BITS

__all__ = ["PackedIdMap"]

_MASK = _PAGE - 1
_FREE = 0xFFFFFFFF
#: A length of this much or more is written as this marker and four bytes.
_LONG = 0xFFFF
#: Below this many bytes a page is never rewritten for its dead ones.
_MIN_REWRITE = 512


def _append(blob: bytearray, value: bytes) -> None:
    """``value`` at the end of ``blob``, behind its length."""
    size = len(value)
    if size < _LONG:
        blob.append(size & 0xFF)
        blob.append(size >> 8)
    else:
        blob += _LONG.to_bytes(2, "little") + size.to_bytes(4, "little")
    blob += value


class _Page:
    __slots__ = ("blob", "dead", "starts", "used")

    def __init__(self) -> None:
        self.blob = bytearray()
        self.starts = array("I", (_FREE,)) * _PAGE
        self.used = 0
        self.dead = 0

    def span(self, slot: int) -> tuple[int, int]:
        """Where the value of ``slot`` lies in the blob: (start, end); (0, -1) if free."""
        start = self.starts[slot]
        if start == _FREE:
            return 0, -1
        blob = self.blob
        size = blob[start] | blob[start + 1] << 8
        start += 2
        if size == _LONG:
            size = int.from_bytes(blob[start : start + 4], "little")
            start += 4
        return start, start + size

    def rewrite(self) -> None:
        """The blob again with only the live values, in slot order."""
        old = self.blob
        blob = bytearray()
        starts = self.starts
        for slot in range(_PAGE):
            start, end = self.span(slot)
            if end < 0:
                continue
            starts[slot] = len(blob)
            _append(blob, bytes(old[start:end]))
        self.blob = blob
        self.dead = 0


class PackedIdMap:
    """int id (≥ 0) -> bytes, as a dict would be for get, set, pop, len and
    iteration (in id order)."""

    __slots__ = ("_len", "_pages")

    def __init__(self) -> None:
        self._pages: dict[int, _Page] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __contains__(self, key: int) -> bool:
        page = self._pages.get(key >> _PAGE_BITS)
        return page is not None and page.starts[key & _MASK] != _FREE

    def get(self, key: int) -> bytes | None:
        page = self._pages.get(key >> _PAGE_BITS)
        if page is None:
            return None
        start, end = page.span(key & _MASK)
        return None if end < 0 else bytes(page.blob[start:end])

    def __getitem__(self, key: int) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: int, value: bytes) -> None:
        number = key >> _PAGE_BITS
        page = self._pages.get(number)
        if page is None:
            page = self._pages[number] = _Page()
        slot = key & _MASK
        end = page.span(slot)[1]
        if end < 0:
            page.used += 1
            self._len += 1
        else:
            page.dead += end - page.starts[slot]
        page.starts[slot] = len(page.blob)
        _append(page.blob, value)
        self._tidy(page)

    def pop(self, key: int) -> bytes | None:
        """Remove ``key``; its value, or None if it was not there."""
        value = self.get(key)
        if value is not None:
            self.discard(key)
        return value

    def discard(self, key: int) -> bool:
        """Remove ``key`` without copying its value out; whether it was there."""
        number = key >> _PAGE_BITS
        page = self._pages.get(number)
        if page is None:
            return False
        slot = key & _MASK
        end = page.span(slot)[1]
        if end < 0:
            return False
        page.dead += end - page.starts[slot]
        page.starts[slot] = _FREE
        page.used -= 1
        self._len -= 1
        if not page.used:
            del self._pages[number]
        else:
            self._tidy(page)
        return True

    @staticmethod
    def _tidy(page: _Page) -> None:
        size = len(page.blob)
        if page.dead * 4 > size >= _MIN_REWRITE:
            page.rewrite()
        elif page.used == _PAGE and not page.dead:
            # A page filled in one pass (ids come in order) keeps the slack its
            # blob grew with; a copy is exactly its size.
            page.blob = bytearray(page.blob)

    def __delitem__(self, key: int) -> None:
        if not self.discard(key):
            raise KeyError(key)

    def items(self) -> Iterator[tuple[int, bytes]]:
        """(id, value) in id order. The map must not change meanwhile."""
        for number in sorted(self._pages):
            page = self._pages[number]
            base = number << _PAGE_BITS
            for slot in range(_PAGE):
                start, end = page.span(slot)
                if end >= 0:
                    yield base + slot, bytes(page.blob[start:end])

    def __iter__(self) -> Iterator[int]:
        for key, _ in self.items():
            yield key

    def blob_bytes(self) -> int:
        """Bytes the blobs hold, dead ones included (for the memory tests)."""
        return sum(len(page.blob) for page in self._pages.values())
