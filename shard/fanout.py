"""From one SIP dialog to every client that asked for it.

Identical (package, record, subscriber) subscriptions from any number of
clients share one dialog of the engine. Each status the engine delivers for a
dialog is written, with the client's own id, into every interested client's
status ring for this shard. A client that joins a dialog under way gets the
last status at once, as a fresh SUBSCRIBE would have brought it an immediate
NOTIFY.

Status is state, not events: when a client's ring is full, its outbox keeps
only the newest message per subscription and writes it once there is room,
counting how many it replaced in ``merged``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from ..id_map import IdMap
from ..ipc.messages import encode
from ..ipc.ring import Ring, RingError, RingWriter
from ..metrics.shard import ShardMetrics
from ..packed_map import PackedIdMap
from ..presence.body import decode
from ..presence.status import Failure, FailureKind, Status, StatusMessage, SubscriptionState
from .kept_status import pack, unpack
from .key_index import Key, KeyIndex
from .output import Output

log = logging.getLogger(__name__)

#: ``DialogEntry.client`` of an entry that serves nobody (client ids start at 1).
_NOBODY = -1
#: What no subscription's key is (an index slot that leads to no entry).
_NO_KEY: Key = ("", "", "")

Interest = tuple[int, int]  # client, the client's subscription id
EndedItem = tuple[int, int, int]  # client, id, the supervisor's seq of the Sub


class _Rare:
    """What few dialogs have: client subscriptions beyond the first, and a
    resource list's statuses by resource URI."""

    __slots__ = ("more", "resources")

    def __init__(self) -> None:
        self.more: tuple[EndedItem, ...] = ()
        self.resources: dict[str, Status] | None = None


class DialogEntry:
    """One engine subscription and the client subscriptions it serves.

    ``last`` is what a client that joins is told at once; for a resource list
    that is one status per resource (``resources``, by resource URI) besides
    the list's own last word. While the dialog rests, it is kept packed
    (:mod:`.kept_status`) in the fan-out's table of packed statuses by the
    dialog's id, and ``kept`` is that table.

    Nearly every dialog serves one client subscription, so the first one lives
    in the entry's own slots (``client``, ``sub_id`` and ``seq``, the
    supervisor's seq of its Sub, echoed when it ends on its own) and only the
    others in a tuple: a tuple of tuples would cost 104 bytes per dialog more,
    and a dict or set per interest more again. The others and a list's
    statuses share one slot (``rare``, None for nearly every dialog): nine
    slots make the entry 16 bytes smaller in pymalloc than ten."""

    __slots__ = (
        "client", "did", "kept", "package", "rare", "record", "seq", "sub_id", "subscriber",
    )

    def __init__(self, did: int, package: str, record: str, subscriber: str) -> None:
        self.did = did
        self.package = package
        self.record = record
        self.subscriber = subscriber
        self.client = _NOBODY
        self.sub_id = 0
        self.seq = 0
        self.kept: StatusMessage | PackedIdMap | None = None
        self.rare: _Rare | None = None

    @property
    def more(self) -> tuple[EndedItem, ...]:
        """(client, id, seq) of the client subscriptions after the first."""
        rare = self.rare
        return () if rare is None else rare.more

    @more.setter
    def more(self, value: tuple[EndedItem, ...]) -> None:
        rare = self.rare
        if rare is None:
            if not value:
                return
            rare = self.rare = _Rare()
        rare.more = value
        if not value and rare.resources is None:
            self.rare = None

    @property
    def resources(self) -> dict[str, Status] | None:
        rare = self.rare
        return None if rare is None else rare.resources

    @resources.setter
    def resources(self, value: dict[str, Status] | None) -> None:
        rare = self.rare
        if rare is None:
            if value is None:
                return
            rare = self.rare = _Rare()
        rare.resources = value
        if value is None and not rare.more:
            self.rare = None

    @property
    def key(self) -> Key:
        """(package, record, subscriber): what identical subscriptions share."""
        return (self.package, self.record, self.subscriber)

    @property
    def interests(self) -> tuple[Interest, ...]:
        """(client, id) of every client subscription served, the first first."""
        if self.client == _NOBODY:
            return ()
        return ((self.client, self.sub_id), *[(c, i) for c, i, _ in self.more])

    def members(self) -> list[EndedItem]:
        """(client, id, seq) of every client subscription served."""
        if self.client == _NOBODY:
            return []
        return [(self.client, self.sub_id, self.seq), *self.more]

    def join(self, client: int, sub_id: int, seq: int) -> None:
        if self.client == _NOBODY:
            self.client, self.sub_id, self.seq = client, sub_id, seq
        else:
            self.more = (*self.more, (client, sub_id, seq))

    def leave(self, client: int, sub_id: int) -> None:
        if self.client == client and self.sub_id == sub_id:
            if self.more:
                self.client, self.sub_id, self.seq = self.more[0]
                self.more = self.more[1:]
            else:
                self.clear()
            return
        self.more = tuple(m for m in self.more if m[0] != client or m[1] != sub_id)

    @property
    def serves(self) -> bool:
        """Some client subscription is served."""
        return self.client != _NOBODY

    def clear(self) -> None:
        """Serve nobody."""
        self.client, self.sub_id, self.seq, self.more = _NOBODY, 0, 0, ()

    def remember(self, msg: StatusMessage) -> None:
        """Keep ``msg`` for clients that join later.

        A status is kept without its parsed document: the body it came from is
        kept anyway, and the parse (about half of an idle dialog's live bytes
        for a small PIDF) is done again, from the same bytes by the same reader,
        only when a client joins (:meth:`known`)."""
        if isinstance(msg, Status):
            if msg.resource:
                if self.resources is None:
                    self.resources = {}
                if msg.state is SubscriptionState.TERMINATED and msg.reason == "removed":
                    self.resources.pop(msg.resource, None)
                else:
                    self.resources[msg.resource] = msg
                return
            if not msg.list and (msg.presentity is not None or msg.document is not None):
                msg = msgspec.structs.replace(msg, presentity=None, document=None)
        self.drop_packed()
        self.kept = msg

    @property
    def last(self) -> StatusMessage | None:
        """The last word, as :meth:`remember` kept it."""
        kept = self.kept
        if isinstance(kept, PackedIdMap):
            data = kept.get(self.did)
            return None if data is None else unpack(data)
        return kept

    def rest(self, table: PackedIdMap) -> None:
        """The dialog went quiet: keep its last word packed in ``table`` until
        it is needed. A resource list's statuses stay as they are (a list does
        not rest)."""
        kept = self.kept
        if kept is None or isinstance(kept, PackedIdMap) or self.resources:
            return
        if isinstance(kept, Status) and kept.list:
            return
        table[self.did] = pack(kept)
        self.kept = table

    def drop_packed(self) -> None:
        """Its packed last word, if any, out of the table (a new one came, or it
        is gone)."""
        kept = self.kept
        if isinstance(kept, PackedIdMap):
            kept.discard(self.did)
            self.kept = None

    @property
    def last_parsed(self) -> StatusMessage | None:
        """The last word as it was delivered, its body parsed again."""
        last = self.last
        if not isinstance(last, Status) or not last.body or last.list or last.error:
            return last
        decoded = decode(self.package, last.content_type, last.body)
        if decoded.presentity is None and decoded.document is None:
            return last
        return msgspec.structs.replace(
            last, presentity=decoded.presentity, document=decoded.document
        )

    def resource_statuses(self) -> list[Status]:
        """The last status of each resource of a resource list (none for one presentity)."""
        return list(self.resources.values()) if self.resources else []

    def known(self) -> list[StatusMessage]:
        """What a joining client is told: every resource's status, then the last word."""
        out: list[StatusMessage] = [*self.resource_statuses()]
        last = self.last_parsed
        if last is not None:
            out.append(last)
        return out


#: How many recent subscribers :class:`SharedSubscribers` remembers.
RECENT_SUBSCRIBERS = 4096


class SharedSubscribers:
    """One string for a watcher's URI across the dialogs of its buddies.

    Each Sub is decoded from the channel into new strings; kept as they come,
    a watcher with a thousand buddies would hold a thousand copies of its URI
    (~75 bytes each). Interning them all cost ~38 bytes for every watcher with
    a single dialog, most of them at a million. A watcher's buddies come
    together (a list subscribed at login), so the last few thousand
    subscribers are remembered instead, and forgotten all at once when full:
    a bounded dict, and every repeat inside the window shares a string."""

    __slots__ = ("_recent",)

    def __init__(self) -> None:
        self._recent: dict[str, str] = {}

    def key(self, package: str, record: str, subscriber: str) -> Key:
        """The key a dialog is kept under: its package interned (there are few),
        its subscriber shared with recent dialogs' where it is the same."""
        recent = self._recent
        shared = recent.get(subscriber)
        if shared is None:
            if len(recent) >= RECENT_SUBSCRIBERS:
                recent.clear()
            recent[subscriber] = shared = subscriber
        return (sys.intern(package), record, shared)


def _merge_key(sub_id: int, msg: StatusMessage) -> tuple[int, str]:
    """Statuses that may replace each other in a full ring: the same subscription
    and, for a resource list, the same resource."""
    return (sub_id, msg.resource if isinstance(msg, Status) else "")


def _for_client(msg: StatusMessage, sub_id: int, merged: int = 0) -> StatusMessage:
    if isinstance(msg, Status):
        return msgspec.structs.replace(msg, id=sub_id, merged=msg.merged + merged)
    return msgspec.structs.replace(msg, id=sub_id)


def _shrunk(msg: StatusMessage, limit: int) -> StatusMessage:
    """A status whose body does not fit the ring still tells its state."""
    if isinstance(msg, Status):
        return msgspec.structs.replace(
            msg, presentity=None, body=b"", error=f"status larger than the ring's {limit} bytes"
        )
    return msgspec.structs.replace(msg, detail=msg.detail[:200])


class Outbox:
    """One client's status ring for this shard, with newest-wins merging when full."""

    __slots__ = ("client", "high", "m", "pending", "ring", "sent", "task", "writer")

    def __init__(
        self,
        client: int,
        ring: Ring,
        metrics: ShardMetrics,
        wake_later: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.client = client
        self.ring = ring
        self.writer: RingWriter = ring.writer()
        self.writer.ring_later(wake_later)
        self.m = metrics
        self.pending: dict[tuple[int, str], tuple[StatusMessage, int]] = {}
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        #: The shard's qsa_ring_high_water_bytes{direction="status"}, raised after writes.
        self.high = metrics.qsa_ring_high_water_bytes.labels("status")

    def put(self, sub_id: int, msg: StatusMessage) -> None:
        # Write at once only when nothing is queued or in flight: the drain task may
        # hold an older status it is waiting to write, and a newer one must not
        # overtake it (the client would end up with the older state).
        if self.task is None and not self.pending and self._try(_for_client(msg, sub_id)):
            return
        key = _merge_key(sub_id, msg)
        previous = self.pending.pop(key, None)
        merged = 0
        if previous is not None:
            merged = previous[1] + 1
            self.m.qsa_status_merges.value += 1
            self.m.errors.labels("ring_merge").value += 1
        else:
            self.m.errors.labels("ring_overflow").value += 1
        self.pending[key] = (msg, merged)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain())

    def _try(self, msg: StatusMessage) -> bool:
        data = encode(msg)
        try:
            if len(data) > self.writer.max_record:
                data = encode(_shrunk(msg, self.writer.max_record))
            ok = self.writer.try_write(data)
        except (RingError, ValueError) as exc:
            log.warning("client %d: status ring unusable: %s", self.client, exc)
            return True  # nothing more can be done for this ring; drop, do not queue
        if ok:
            self._written()
        return ok

    def _written(self) -> None:
        """Count a status written and follow the deepest this ring has been."""
        self.sent += 1
        self.m.qsa_status_sent.value += 1
        try:
            depth = self.writer.depth_bytes()
        except RingError:
            return  # a broken ring shows at the next write
        self.high.set_max(depth)

    async def _drain(self) -> None:
        try:
            while self.pending:
                key = next(iter(self.pending))
                msg, merged = self.pending.pop(key)
                sub_id = key[0]
                out = _for_client(msg, sub_id, merged)
                if self._try(out):
                    continue
                data = encode(out)
                try:
                    await self.writer.write(data)
                except (RingError, ValueError) as exc:
                    log.warning("client %d: status ring failed: %s", self.client, exc)
                    self.pending.clear()
                    return
                self._written()
        finally:
            self.task = None

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.pending.clear()
        self.ring.close()


class FanOut:
    """The dedup table and the outboxes of one shard.

    ``start`` and ``stop`` are the engine's subscribe and unsubscribe; the engine's
    output (messages, finished dialogs) comes back through :meth:`consume`. ``ended`` is told of
    client subscriptions that ended without the client's unsubscribe (refused,
    ended for good by the notifier, killed by an operator), so the supervisor can
    forget them.
    """

    def __init__(
        self,
        metrics: ShardMetrics,
        start: Callable[[int, str, str, str], None],
        stop: Callable[[int], None],
        ended: Callable[[list[EndedItem]], None] | None = None,
        *,
        wake_later: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.m = metrics
        #: How a client's doorbell is rung: at once (None) or once per turn of
        #: the shard's loop (its ``call_soon``), however many statuses it got.
        self._wake_later = wake_later
        self._start = start
        self._stop = stop
        self._ended = ended
        self.outboxes: dict[int, Outbox] = {}
        #: By dialog id (numbered in order here: an IdMap's pages suit them).
        self.dialogs: IdMap[DialogEntry] = IdMap()
        #: The last status of each dialog at rest, packed, by dialog id.
        self._packed = PackedIdMap()
        self._shared = SharedSubscribers()
        #: The id of the dialog a new subscription to a (package, record,
        #: subscriber) joins; an ending dialog is no longer there.
        self._by_key = KeyIndex(self._key_of)
        #: client -> its subscription ids here -> the entry serving each: the
        #: unsubscribe's and detach's index, one paged slot per interest.
        self._clients: dict[int, IdMap[DialogEntry]] = {}
        self._interests = 0
        self._next_did = 1
        self._ring_depth = metrics.qsa_ring_depth_bytes.labels("status")
        metrics.add_sampler(self.sample_rings)

    # ------------------------------------------------------------------ clients

    def attach(self, client: int, ring: Ring) -> None:
        old = self.outboxes.pop(client, None)
        if old is not None:
            old.close()
        self.outboxes[client] = Outbox(client, ring, self.m, self._wake_later)

    def detach(self, client: int) -> None:
        """The client is gone: drop its interests (ending dialogs nobody else uses)."""
        # The client's own interests from the index: no scan of the shard's others
        # (a reconnect loop must not stall the shard).
        for sub_id in list(self._clients.get(client, ())):
            self._remove(client, sub_id, tell=False)
        box = self.outboxes.pop(client, None)
        if box is not None:
            box.close()
        self._gauges()

    # ------------------------------------------------------------------ requests

    def refuse(self, client: int, sub_id: int, detail: str) -> None:
        """Tell a client its subscription was refused before it reached the engine."""
        self._send(client, sub_id, Failure(sub_id, FailureKind.REFUSED, detail=detail))

    def subscribe(
        self, client: int, sub_id: int, package: str, record: str, subscriber: str, *,
        replay: bool = False, seq: int = 0,
    ) -> None:
        if sub_id in self._clients.get(client, ()):
            self._send(client, sub_id, Failure(
                sub_id, FailureKind.REFUSED, detail=f"subscription id {sub_id} is already in use"
            ))
            return
        if replay:
            self._send(client, sub_id, Status(sub_id, SubscriptionState.PENDING, "reestablishing"))
        key = self._shared.key(package, record, subscriber)
        entry = self._serving(key)
        if entry is not None:
            entry.join(client, sub_id, seq)
            self._index(client, sub_id, entry)
            for known in entry.known():
                self._send(client, sub_id, known)
            self._gauges()
            return
        did = self._next_did
        self._next_did += 1
        entry = DialogEntry(did, *key)
        entry.join(client, sub_id, seq)
        self.dialogs[did] = entry
        self._by_key.add(did, key)
        self._index(client, sub_id, entry)
        self._gauges()
        self._start(did, record, entry.subscriber, entry.package)

    def restore(self, key: Key, kept: Sequence[StatusMessage], did: int | None = None) -> int:
        """A dialog the store gave back, with no client yet: a client that asks
        for ``key`` joins it and is told ``kept`` at once (a resource list's
        statuses, then its last word). Returns its id: ``did`` (the one its
        Call-ID names) if no id that high was handed out yet, else a new one."""
        if did is None or did < self._next_did:
            did = self._next_did
        self._next_did = did + 1
        entry = DialogEntry(did, *self._shared.key(*key))
        for msg in kept:
            entry.remember(msgspec.structs.replace(msg, id=did))
        old = self._serving(entry.key)
        if old is not None:
            self._unkey(old)  # the restored one is what a new subscription joins
        self.dialogs[did] = entry
        self._by_key.add(did, entry.key)
        self._gauges()
        return did

    def serving(self, key: Key) -> int | None:
        """The dialog a new subscription to ``key`` would join, if any."""
        return self._by_key.get(key)

    def release_unclaimed(self, dids: list[int]) -> int:
        """End the restored dialogs of ``dids`` that no client joined; how many."""
        released = sum(self._release(self.dialogs.get(did)) for did in dids)
        if released:
            self._gauges()
        return released

    def _release(self, entry: DialogEntry | None) -> bool:
        """End a restored dialog no client joined; False if joined or already ending."""
        if entry is None or entry.serves or self._by_key.get(entry.key) != entry.did:
            return False  # joined, or already ending (a client came and went)
        self._unkey(entry)
        self._stop(entry.did)
        return True

    def unsubscribe(
        self, client: int, sub_id: int, *, missed: bool = False, key: Key | None = None
    ) -> bool:
        """End one client subscription; the client gets its final status at once.

        ``missed``: the subscription never reached this shard (it was down when
        the client subscribed and unsubscribed); only the final status is owed,
        and the dialog of ``key`` ends if the store gave it back and no client
        in the replay before this joined it.
        """
        if missed and sub_id not in self._clients.get(client, ()):
            self._send(client, sub_id, Status(
                sub_id, SubscriptionState.TERMINATED, "unsubscribed"
            ))
            if key is not None and self._release(self._serving(key)):
                self._gauges()
            return False
        return self._remove(client, sub_id, tell=True)

    def _remove(self, client: int, sub_id: int, *, tell: bool) -> bool:
        entry = self._unindex(client, sub_id)
        if entry is None:
            return False
        entry.leave(client, sub_id)
        if tell:
            # The client is told at once; the SIP teardown goes on without it.
            self._send(client, sub_id, Status(
                sub_id, SubscriptionState.TERMINATED, "unsubscribed"
            ))
        if not entry.serves:
            self._unkey(entry)  # a new subscribe must not join a dying dialog
            self._stop(entry.did)
        self._gauges()
        return True

    def kill(self, did: int, detail: str) -> list[Interest]:
        """End a dialog for every client (operator's ``kill``); returns who was told."""
        entry = self.dialogs.get(did)
        if entry is None:
            return []
        members = sorted(entry.members())
        for client, sub_id, _ in members:
            self._unindex(client, sub_id)
            self._send(client, sub_id, Failure(sub_id, FailureKind.TERMINATED, detail=detail))
        entry.clear()
        self._unkey(entry)
        self._report_ended(members)
        self._stop(did)
        self._gauges()
        return [(client, sub_id) for client, sub_id, _ in members]

    # ------------------------------------------------------------------ engine output

    def consume(self, out: Output, arrived: float | None = None) -> None:
        """One output of the engine: its messages, then its finished ids, then
        those that went to rest.
        ``arrived`` is when the datagram behind it came in (perf_counter), so
        the NOTIFY → ring latency can be measured."""
        for msg in out.messages:
            self.deliver(msg)
        if arrived is not None and out.messages:
            self.m.notify_to_client_seconds.observe(time.perf_counter() - arrived)
        for did in out.finished:
            self.finished(did)
        for did in out.rested:
            self.rest(did)

    def deliver(self, msg: StatusMessage) -> None:
        entry = self.dialogs.get(msg.id)
        if entry is None:
            return
        entry.remember(msg)
        client = entry.client
        if client == _NOBODY:
            return
        self._send(client, entry.sub_id, msg)
        for client, sub_id, _ in entry.more:
            self._send(client, sub_id, msg)

    def rest(self, did: int) -> None:
        """The engine let a dialog rest: what is kept of it may rest too."""
        entry = self.dialogs.get(did)
        if entry is None:
            return
        try:
            entry.rest(self._packed)
        except Exception:  # kept as it was: packing is an economy, never a step
            log.exception("dialog %d: its last status could not be packed", did)

    def finished(self, did: int) -> None:
        """The engine forgot the dialog: clients still attached get nothing more from it."""
        entry = self.dialogs.get(did)
        if entry is None:
            return
        self._unkey(entry)  # while its key can still be read through its id
        self.dialogs.pop(did)
        entry.drop_packed()
        members = sorted(entry.members())
        for client, sub_id, _ in members:
            self._unindex(client, sub_id)
        self._report_ended(members)
        entry.clear()
        self._gauges()

    def _report_ended(self, items: list[EndedItem]) -> None:
        if items and self._ended is not None:
            self._ended(items)

    # ------------------------------------------------------------------ helpers

    def _unkey(self, entry: DialogEntry) -> None:
        """Take ``entry`` out of the dedup index, if it is still the one there
        (a newer dialog for the same key may have taken its place)."""
        self._by_key.remove(entry.did, entry.key)

    def _serving(self, key: Key) -> DialogEntry | None:
        did = self._by_key.get(key)
        return None if did is None else self.dialogs.get(did)

    def _key_of(self, did: int) -> Key:
        """The key of an indexed dialog: every one is in ``dialogs`` (unkeyed
        before it leaves)."""
        entry = self.dialogs.get(did)
        return _NO_KEY if entry is None else entry.key

    def _index(self, client: int, sub_id: int, entry: DialogEntry) -> None:
        ids = self._clients.get(client)
        if ids is None:
            ids = self._clients[client] = IdMap()
        ids[sub_id] = entry
        self._interests += 1

    def _unindex(self, client: int, sub_id: int) -> DialogEntry | None:
        ids = self._clients.get(client)
        if ids is None:
            return None
        entry = ids.pop(sub_id)
        if entry is not None:
            self._interests -= 1
            if not ids:
                del self._clients[client]
        return entry

    def _send(self, client: int, sub_id: int, msg: StatusMessage) -> None:
        box = self.outboxes.get(client)
        if box is not None:
            box.put(sub_id, msg)

    def sample_rings(self) -> None:
        """qsa_ring_depth_bytes{direction="status"}: bytes waiting in all clients' rings."""
        total = 0
        for box in self.outboxes.values():
            with contextlib.suppress(RingError):
                total += box.writer.depth_bytes()
        self._ring_depth.set(total)

    def _gauges(self) -> None:
        self.m.dialogs.set(len(self._by_key))
        self.m.subscribers.set(self._interests)

    def find(self, record: str = "", subscriber: str = "") -> list[DialogEntry]:
        return [
            e for e in self.dialogs.values()
            if (not record or record in e.record) and (not subscriber or subscriber in e.subscriber)
        ]

    def describe(self, entry: DialogEntry) -> dict[str, Any]:
        last = entry.last_parsed
        return {
            "package": entry.package,
            "record": entry.record,
            "subscriber": entry.subscriber,
            "clients": sorted([c, i] for c, i in entry.interests),
            "last": None if last is None else msgspec.to_builtins(last),
            "resources": len(entry.resources) if entry.resources else 0,
        }

    def close(self) -> None:
        for box in self.outboxes.values():
            with contextlib.suppress(Exception):
                box.close()
        self.outboxes.clear()
