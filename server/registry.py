"""Which shard holds each client subscription, so nothing is lost when either side dies.

The supervisor keeps one entry per (client, subscription id): the shard it was
routed to and what was asked. With it a dead client's subscriptions are dropped
at once, a restarted shard gets its subscriptions replayed, and an unsubscribe
that found its shard down is sent once the shard is back (the client still waits
for its final status, which only the shard writes). Pure bookkeeping: it decides
what to send where and the supervisor sends it.

There is an entry for every subscription of the service, a million on a big
node, so each is kept packed: the shard, seq and a number for a known
package in front, and the strings behind (:mod:`presence_b2b.packed_strings`),
~60 bytes for a typical one, in the page blobs of a
:class:`PackedIdMap` by subscription id, ~15 bytes around the entry's own
(a bytes object of its own in an :class:`IdMap` took ~55 more, a dict slot
and an entry object with its own strings ~300 more). A watcher's URI is
copied into each of its entries (~30 bytes) instead of shared through an
interned string; the interned string cost more for every watcher with fewer
than about six buddies. Only the replay to a restarted shard reads the
strings back. An entry beyond the packed widths (a string over 64 KiB) is
kept whole in a dict beside the blobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..ipc.channel import Sub, Unsub
from ..ipc.messages import Subscribe, Unsubscribe
from ..packed_map import PackedIdMap
from ..packed_strings import pack_counts, pack_strings, unpack_counts, unpack_strings
from ..presence.packages import PACKAGE_TYPES
from .routing import shard_of

__all__ = ["Entry", "Registry"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One client subscription as the registry keeps it."""

    shard: int
    package: str
    record: str
    subscriber: str
    seq: int = 0
    """Unique per Sub sent; the shard echoes it when the subscription ends on its own."""


#: Packages an entry names by a number (1, 2, ...); 0: the name follows as a string.
_PACKAGES = ("presence", *(p for p in PACKAGE_TYPES if p != "presence"), "presence.winfo")
_PACKAGE_CODES = {name: code for code, name in enumerate(_PACKAGES, 1)}

#: An entry as kept: packed, or as it is when it does not fit the packed widths.
Kept = bytes | Entry


def _pack(entry: Entry) -> Kept:
    """Shard, seq and package code as counts (a byte or three each), then the
    package's name if it has no code, the record and the subscriber."""
    code = _PACKAGE_CODES.get(entry.package, 0)
    out = bytearray()
    try:
        pack_counts(out, (entry.shard, entry.seq, code))
        strings = (entry.record, entry.subscriber)
        out += pack_strings(*strings) if code else pack_strings(entry.package, *strings)
    except OverflowError:
        return entry  # a string over 64 KiB or a negative number
    return bytes(out)


def _unpack(kept: Kept) -> Entry:
    if isinstance(kept, Entry):
        return kept
    (shard, seq, code), offset = unpack_counts(kept, 0, 3)
    strings = unpack_strings(kept, offset)
    package = _PACKAGES[code - 1] if code else strings.pop(0)
    record, subscriber = strings
    return Entry(shard, package, record, subscriber, seq)


def _shard_seq(kept: Kept) -> tuple[int, int]:
    """The shard and seq of an entry, its strings left packed."""
    if isinstance(kept, Entry):
        return kept.shard, kept.seq
    (shard, seq), _ = unpack_counts(kept, 0, 2)
    return shard, seq


class _ClientEntries:
    """One client's entries by subscription id: packed, or whole beside them."""

    __slots__ = ("packed", "whole")

    def __init__(self) -> None:
        self.packed = PackedIdMap()
        self.whole: dict[int, Entry] = {}

    def __len__(self) -> int:
        return len(self.packed) + len(self.whole)

    def get(self, sub_id: int) -> Kept | None:
        kept = self.packed.get(sub_id)
        return kept if kept is not None else self.whole.get(sub_id)

    def put(self, sub_id: int, kept: Kept) -> None:
        if isinstance(kept, Entry):
            self.packed.discard(sub_id)
            self.whole[sub_id] = kept
        else:
            self.whole.pop(sub_id, None)
            self.packed[sub_id] = kept

    def pop(self, sub_id: int) -> Kept | None:
        kept = self.packed.pop(sub_id)
        return kept if kept is not None else self.whole.pop(sub_id, None)

    def items(self) -> list[tuple[int, Kept]]:
        """Every (id, entry), in id order."""
        items: list[tuple[int, Kept]] = list(self.packed.items())
        if self.whole:
            items = sorted([*items, *self.whole.items()], key=lambda item: item[0])
        return items


class Registry:
    """(client, subscription id) -> Entry, for the clients connected now."""

    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count
        self._clients: dict[int, _ClientEntries] = {}
        self._seq = 0
        #: Unsubscribes that found their shard down, owed a final status once it is back.
        self._missed: dict[int, list[Unsub]] = {i: [] for i in range(shard_count)}

    def add_client(self, client: int) -> None:
        self._clients[client] = _ClientEntries()

    def remove_client(self, client: int) -> int:
        """Forget a client that left; returns how many subscriptions it had."""
        entries = self._clients.pop(client, None)
        return 0 if entries is None else len(entries)

    def has_client(self, client: int) -> bool:
        return client in self._clients

    def __len__(self) -> int:
        """Subscriptions of every client."""
        return sum(len(entries) for entries in self._clients.values())

    def count(self, client: int) -> int:
        entries = self._clients.get(client)
        return 0 if entries is None else len(entries)

    def _kept(self, client: int, sub_id: int) -> Kept | None:
        entries = self._clients.get(client)
        return None if entries is None else entries.get(sub_id)

    def _drop(self, client: int, sub_id: int) -> Kept | None:
        entries = self._clients.get(client)
        return None if entries is None else entries.pop(sub_id)

    def get(self, client: int, sub_id: int) -> Entry | None:
        kept = self._kept(client, sub_id)
        return None if kept is None else _unpack(kept)

    def shard_for(self, client: int, msg: Subscribe | Unsubscribe) -> int | None:
        """The shard ``msg`` would be sent to, without recording anything; None: nowhere."""
        kept = self._kept(client, msg.id)
        if kept is not None:
            return _shard_seq(kept)[0]
        if isinstance(msg, Unsubscribe):
            return None
        return shard_of(msg.record, msg.subscriber, self.shard_count)

    def subscribe(self, client: int, msg: Subscribe, limit: int = 0) -> tuple[int, Sub]:
        """The shard to send ``msg`` to, and the Sub to send.

        A new id is routed by (record, subscriber) and recorded. An id the client
        already holds goes, unrecorded, to the shard that holds it, which refuses
        the duplicate and tells the client. A subscription over ``limit`` (0: none)
        goes to its shard with a refusal, for the same reason.
        """
        entries = self._clients[client]
        existing = entries.get(msg.id)
        if existing is not None:
            shard, seq = _shard_seq(existing)
            return shard, self._sub(client, msg, seq=seq)
        index = shard_of(msg.record, msg.subscriber, self.shard_count)
        if limit and len(entries) >= limit:
            refuse = (
                f"this client already has {len(entries)} subscriptions, the limit"
                " (server.max_subscriptions_per_client)"
            )
            return index, self._sub(client, msg, refuse=refuse)
        self._seq += 1
        entries.put(msg.id, _pack(Entry(index, msg.package, msg.record, msg.subscriber, self._seq)))
        return index, self._sub(client, msg, seq=self._seq)

    @staticmethod
    def _sub(client: int, msg: Subscribe, *, seq: int = 0, refuse: str = "") -> Sub:
        return Sub(
            client, msg.id, msg.package, msg.record, msg.subscriber, seq=seq, refuse=refuse
        )

    def unsubscribe(self, client: int, sub_id: int) -> Entry | None:
        """Drop the entry of an unsubscribe; None when the client holds no such id."""
        kept = self._drop(client, sub_id)
        return None if kept is None else _unpack(kept)

    def owe_unsubscribe(self, client: int, sub_id: int, entry: Entry) -> None:
        """The Unsub could not reach its shard (down): send it with the replay,
        with the key of the dialog the shard may restore from its store."""
        self._missed[entry.shard].append(Unsub(
            client, sub_id, missed=True, key=(entry.package, entry.record, entry.subscriber)
        ))

    def forget(self, client: int, sub_id: int) -> None:
        """Drop an entry the shard ended on its own (an operator's kill)."""
        self._drop(client, sub_id)

    def ended(self, shard: int, items: Iterable[tuple[int, int, int]]) -> None:
        """Drop what a shard says ended on its own: (client, id, seq) items. An entry
        is dropped only if it is still that Sub, not a newer one under the same id."""
        for client, sub_id, seq in items:
            kept = self._kept(client, sub_id)
            if kept is not None and _shard_seq(kept) == (shard, seq):
                self._drop(client, sub_id)

    def replay(self, shard: int, *, restarted: bool) -> list[Sub | Unsub]:
        """What a shard that just came up must be sent: every subscription it owns,
        then the unsubscribes it missed whose client is still connected."""
        items: list[Sub | Unsub] = []
        for client, entries in self._clients.items():
            for sub_id, kept in entries.items():
                if _shard_seq(kept)[0] != shard:
                    continue
                e = _unpack(kept)
                items.append(Sub(
                    client, sub_id, e.package, e.record, e.subscriber, replay=restarted, seq=e.seq
                ))
        missed, self._missed[shard] = self._missed[shard], []
        items += [u for u in missed if u.client in self._clients]
        return items
