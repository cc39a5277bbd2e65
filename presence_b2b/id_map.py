"""A map from ids handed out in order to values, in pages of slots.

A client numbers its subscriptions 1, 2, 3, ... (the client library does, and
never reuses one), and a shard its dialogs, so the ids a table holds at any
time sit close together.
A dict spends ~42 bytes of table per entry at a million entries, and each id
above 256 is an int object of 32 bytes more. Here the ids live in pages of
``PAGE`` slots, the page found by ``id >> PAGE_BITS`` in a small dict: a dense
id costs one 8-byte slot and a 64th of its page's overhead (~11 bytes in all
at a million, against ~74 for a dict entry and its int key).

A page goes when its last id does, so a long-lived table whose ids keep
growing holds pages only for the ids it still has. One live id pins its page:
a client that spreads its ids one per page pays ~600 bytes per id, ~8 times a
dict's entry, bounded by the subscriptions a client may hold, and a shard's
lone dialogs left after heavy churn cost as much each. Values are never None
(None marks a free slot).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["PAGE", "IdMap"]

V = TypeVar("V")

PAGE_BITS = 6
PAGE = 1 << PAGE_BITS
_MASK = PAGE - 1


class _Page(Generic[V]):
    __slots__ = ("slots", "used")

    def __init__(self) -> None:
        self.slots: list[V | None] = [None] * PAGE
        self.used = 0


class IdMap(Generic[V]):
    """int id -> value, as a dict would be for the operations the tables use;
    iteration goes in id order."""

    __slots__ = ("_len", "_pages")

    def __init__(self) -> None:
        self._pages: dict[int, _Page[V]] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def get(self, key: int) -> V | None:
        page = self._pages.get(key >> PAGE_BITS)
        return None if page is None else page.slots[key & _MASK]

    def __getitem__(self, key: int) -> V:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: int, value: V) -> None:
        number = key >> PAGE_BITS
        page = self._pages.get(number)
        if page is None:
            page = self._pages[number] = _Page()
        slot = key & _MASK
        if page.slots[slot] is None:
            page.used += 1
            self._len += 1
        page.slots[slot] = value

    def pop(self, key: int) -> V | None:
        """Remove ``key``; its value, or None if it was not there."""
        number = key >> PAGE_BITS
        page = self._pages.get(number)
        if page is None:
            return None
        slot = key & _MASK
        value = page.slots[slot]
        if value is None:
            return None
        page.slots[slot] = None
        page.used -= 1
        self._len -= 1
        if not page.used:
            del self._pages[number]
        return value

    def __delitem__(self, key: int) -> None:
        if self.pop(key) is None:
            raise KeyError(key)

    def items(self) -> Iterator[tuple[int, V]]:
        """(id, value) in id order. The map must not change meanwhile."""
        for number in sorted(self._pages):
            base = number << PAGE_BITS
            for slot, value in enumerate(self._pages[number].slots):
                if value is not None:
                    yield base + slot, value

    def values(self) -> Iterator[V]:
        for _, value in self.items():
            yield value

    def __iter__(self) -> Iterator[int]:
        for key, _ in self.items():
            yield key
