"""Which shard holds each client subscription, so nothing is lost when either side dies.

The supervisor keeps one entry per (client, subscription id): the shard it was
routed to and what was asked. With it a dead client's subscriptions are dropped
at once, a restarted shard gets its subscriptions replayed, and an unsubscribe
that found its shard down is sent once the shard is back (the client still waits
for its final status, which only the shard writes). Pure bookkeeping: it decides
what to send where and the supervisor sends it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from ..ipc.channel import Sub, Unsub
from ..ipc.messages import Subscribe, Unsubscribe
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


class Registry:
    """(client, subscription id) -> Entry, for the clients connected now."""

    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count
        self._clients: dict[int, dict[int, Entry]] = {}
        self._seq = 0
        #: Unsubscribes that found their shard down, owed a final status once it is back.
        self._missed: dict[int, list[Unsub]] = {i: [] for i in range(shard_count)}

    def add_client(self, client: int) -> None:
        self._clients[client] = {}

    def remove_client(self, client: int) -> int:
        """Forget a client that left; returns how many subscriptions it had."""
        return len(self._clients.pop(client, {}))

    def has_client(self, client: int) -> bool:
        return client in self._clients

    def __len__(self) -> int:
        """Subscriptions of every client."""
        return sum(len(entries) for entries in self._clients.values())

    def count(self, client: int) -> int:
        return len(self._clients.get(client, {}))

    def get(self, client: int, sub_id: int) -> Entry | None:
        return self._clients.get(client, {}).get(sub_id)

    def shard_for(self, client: int, msg: Subscribe | Unsubscribe) -> int | None:
        """The shard ``msg`` would be sent to, without recording anything; None: nowhere."""
        entry = self._clients.get(client, {}).get(msg.id)
        if isinstance(msg, Unsubscribe):
            return None if entry is None else entry.shard
        if entry is not None:
            return entry.shard
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
            return existing.shard, self._sub(client, msg, seq=existing.seq)
        index = shard_of(msg.record, msg.subscriber, self.shard_count)
        if limit and len(entries) >= limit:
            refuse = (
                f"this client already has {len(entries)} subscriptions, the limit"
                " (server.max_subscriptions_per_client)"
            )
            return index, self._sub(client, msg, refuse=refuse)
        self._seq += 1
        # One subscriber (or package) string for all its entries: a watcher with
        # a thousand buddies costs one copy, not a thousand.
        entries[msg.id] = Entry(
            index, sys.intern(msg.package), msg.record, sys.intern(msg.subscriber), self._seq
        )
        return index, self._sub(client, msg, seq=self._seq)

    @staticmethod
    def _sub(client: int, msg: Subscribe, *, seq: int = 0, refuse: str = "") -> Sub:
        return Sub(
            client, msg.id, msg.package, msg.record, msg.subscriber, seq=seq, refuse=refuse
        )

    def unsubscribe(self, client: int, sub_id: int) -> Entry | None:
        """Drop the entry of an unsubscribe; None when the client holds no such id."""
        return self._clients.get(client, {}).pop(sub_id, None)

    def owe_unsubscribe(self, client: int, sub_id: int, shard: int) -> None:
        """The Unsub could not reach its shard (down): send it with the replay."""
        self._missed[shard].append(Unsub(client, sub_id, missed=True))

    def forget(self, client: int, sub_id: int) -> None:
        """Drop an entry the shard ended on its own (an operator's kill)."""
        self._clients.get(client, {}).pop(sub_id, None)

    def ended(self, shard: int, items: Iterable[tuple[int, int, int]]) -> None:
        """Drop what a shard says ended on its own: (client, id, seq) items. An entry
        is dropped only if it is still that Sub, not a newer one under the same id."""
        for client, sub_id, seq in items:
            entries = self._clients.get(client, {})
            entry = entries.get(sub_id)
            if entry is not None and entry.shard == shard and entry.seq == seq:
                del entries[sub_id]

    def replay(self, shard: int, *, restarted: bool) -> list[Sub | Unsub]:
        """What a shard that just came up must be sent: every subscription it owns,
        then the unsubscribes it missed whose client is still connected."""
        items: list[Sub | Unsub] = [
            Sub(client, sub_id, e.package, e.record, e.subscriber, replay=restarted, seq=e.seq)
            for client, entries in self._clients.items()
            for sub_id, e in entries.items()
            if e.shard == shard
        ]
        missed, self._missed[shard] = self._missed[shard], []
        items += [u for u in missed if u.client in self._clients]
        return items
