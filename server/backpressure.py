"""Back-pressure from a shard's channel to the request rings of the clients feeding it.

The supervisor's channel to a shard queues what the socket buffer cannot take
yet. Left alone, a client that subscribes faster than its shard can read
grows that queue without bound (40 960 subscribes once added 468 MB to the
supervisor). So when the queue of the shard a client's next request is for
passes :data:`SHARD_BACKLOG_BYTES`, the supervisor stops draining that
client's request ring and keeps the records it had already read; once the
channel has drained, they go out in ring order and the ring is read again.
Nothing is dropped: a paused client's ring fills up and its writer waits
(qsa-protocol.md §7), which is the back-pressure the protocol promises.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Final

from ..ipc.control import ConnectedClient

SHARD_BACKLOG_BYTES: Final = 4 << 20
"""Bytes queued for one shard above what its 1 MiB socket buffer holds, before the
clients sending it more are paused: a few thousand subscribes of ordinary size,
so a burst still flows while the shard catches up."""


@dataclass(eq=False)
class Held:
    """A paused client: the records it had read and not yet sent, oldest first."""

    client: ConnectedClient
    records: collections.deque[bytes]


class RequestGate:
    """Which paused clients wait for which shard's channel, and what they hold.

    Pure bookkeeping: the supervisor pauses a client's ring reader when it
    calls :meth:`hold` and, after :meth:`release`, sends the held records and
    reads the ring again.
    """

    def __init__(self) -> None:
        self._waiting: dict[int, dict[int, Held]] = collections.defaultdict(dict)
        self.pauses = 0

    def hold(self, shard: int, client: ConnectedClient, records: collections.deque[bytes]) -> None:
        """Keep ``client``'s unsent ``records`` until ``shard``'s channel drains."""
        self._waiting[shard][client.id] = Held(client, records)
        self.pauses += 1

    def release(self, shard: int) -> list[Held]:
        """The clients that waited on ``shard``, now free to go on, oldest first."""
        return list(self._waiting.pop(shard, {}).values())

    def forget(self, client: int) -> None:
        """The client is gone: drop what it held (its subscriptions end anyway)."""
        for held in self._waiting.values():
            held.pop(client, None)

    def __len__(self) -> int:
        """Clients paused now."""
        return sum(len(held) for held in self._waiting.values())
