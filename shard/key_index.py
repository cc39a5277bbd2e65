"""The fan-out's dedup index: a dialog id under its (package, record, subscriber).

Each dialog of the fan-out is found by its key when a client subscribes to
the same pair. A dict of half a million entries costs ~42 bytes of table per
entry, ~52 just after it doubled. This table keeps only the 8-byte dialog
ids, open-addressed with linear probing, between a quarter and a half full
(16 to 32 bytes an entry); the key is not kept twice: a slot's id leads to its entry
(``key_of``), whose strings are compared. A removed id leaves a tombstone
until the next rebuild, so that a lookup still probes past it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

__all__ = ["Key", "KeyIndex"]

Key = tuple[str, str, str]  # package, record, subscriber

_EMPTY = 0  # dialog ids start at 1
_GONE = -1  # a removed id: probe on past it
_MIN_SLOTS = 8


class KeyIndex:
    """Key -> dialog id, for the ids whose key ``key_of`` gives."""

    __slots__ = ("_gone", "_key_of", "_len", "_mask", "_slots")

    def __init__(self, key_of: Callable[[int], Key]) -> None:
        self._key_of = key_of
        self._slots = array("q", bytes(8 * _MIN_SLOTS))
        self._mask = _MIN_SLOTS - 1
        self._len = 0
        self._gone = 0

    def __len__(self) -> int:
        return self._len

    def get(self, key: Key) -> int | None:
        """The id indexed under ``key``, if any."""
        i = self._slot(key, 0)
        return None if i < 0 else self._slots[i]

    def add(self, did: int, key: Key) -> None:
        """Index ``did`` under ``key`` (its key, under which nothing is indexed)."""
        if did <= 0:
            raise ValueError(f"dialog id {did} is not positive")
        size = len(self._slots)
        if (self._len + self._gone + 1) * 2 > size:
            # Twice the size when live ids fill a quarter, else the same size
            # without its tombstones.
            self._rebuild(size * 2 if (self._len + 1) * 4 > size else size)
        self._put(did, hash(key))
        self._len += 1

    def remove(self, did: int, key: Key) -> bool:
        """Take ``did`` out if it is what is indexed under ``key``."""
        i = self._slot(key, did) if did > 0 else -1
        if i < 0:
            return False
        slots = self._slots
        slots[i] = _GONE
        self._len -= 1
        self._gone += 1
        if self._len * 8 < len(slots) and len(slots) > _MIN_SLOTS:
            self._rebuild(len(slots) // 2)
        return True

    def _slot(self, key: Key, did: int) -> int:
        """Where ``did`` is (0: whichever id ``key`` is the key of), or -1."""
        slots = self._slots
        mask = self._mask
        i = hash(key) & mask
        while True:
            found = slots[i]
            if found == _EMPTY:
                return -1
            if found != _GONE and (found == did if did else self._key_of(found) == key):
                return i
            i = (i + 1) & mask

    def _put(self, did: int, hashed: int) -> None:
        slots = self._slots
        mask = self._mask
        i = hashed & mask
        while slots[i] != _EMPTY and slots[i] != _GONE:
            i = (i + 1) & mask
        if slots[i] == _GONE:
            self._gone -= 1
        slots[i] = did

    def _rebuild(self, size: int) -> None:
        """The live ids in a table of ``size`` slots, without tombstones."""
        old = self._slots
        self._slots = array("q", bytes(8 * size))
        self._mask = size - 1
        self._gone = 0
        for did in old:
            if did > 0:
                self._put(did, hash(self._key_of(did)))
