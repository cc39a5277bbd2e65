"""The shard's side of the dialog store: the engine's journal going in, and
dialogs coming back after a restart or from a host that died.

The engine only notes which subscriptions changed and how (``Engine.changes``);
this object turns them into store records a few times a second, so a dialog
that gets ten NOTIFYs in that time is written once, with its newest status,
and nothing on the NOTIFY path waits for a database. Times cross the store as
wall-clock seconds (they must mean the same to the next process or host) and
the engine's as its own monotonic clock; the conversion happens here.

What comes back is kept with no SIP traffic: a confirmed dialog goes into the
engine as it was (same Call-ID, tags, route; CSeq above the stored mark) and
into the fan-out with its last status, so a client that subscribes to the pair
again gets that status at once. Nobody asks within ``reattach_grace``: the
dialog is unsubscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from ..ipc.messages import (
    ProtocolError,
    decode_status,
    decode_statuses,
    encode,
    encode_statuses,
)
from ..metrics.shard import ShardMetrics
from ..presence.status import StatusMessage
from ..store.driver import DialogStore, StoreStats
from ..store.partition import partition_of
from ..store.record import Change, DialogKey, DialogRecord
from .call_id import dialog_id_in
from .engine import Engine
from .fanout import FanOut
from .usage import RestingUsage, Usage

__all__ = ["JOURNAL_TICK", "Persistence", "record_of"]

log = logging.getLogger(__name__)

#: How often the engine's journal is turned into store records, seconds. The
#: store's own ``batch_interval_ms`` decides when routine changes are written.
JOURNAL_TICK = 0.05

#: Dialogs written per journal tick when the store opened after the shard had
#: subscriptions (20 000 a second): enough to catch up with a million in under
#: a minute, few enough that a tick stays short.
CATCH_UP_BATCH = 1000


def record_of(
    usage: Usage,
    last: StatusMessage | None,
    to_wall: float,
    resources: Sequence[StatusMessage] = (),
) -> DialogRecord | None:
    """The store's record of a subscription's dialog, or None when it has none
    worth keeping (not confirmed yet, being torn down, waiting to retry).
    ``to_wall`` turns the engine's clock into Unix time. A resource list's
    ``resources`` (the last status of each) are kept with its last word."""
    dialog = usage.dialog
    refresh = usage.refresh_due
    if dialog is None or refresh is None or dialog.remote_tag is None:
        return None
    expires = usage.expires_at
    return DialogRecord(
        package=usage.package,
        record=usage.record,
        subscriber=usage.subscriber,
        call_id=dialog.call_id,
        local_tag=dialog.local_tag,
        remote_tag=dialog.remote_tag,
        local_cseq=dialog.local_cseq,
        route_set=tuple(dialog.route_set),
        remote_target=dialog.remote_target,
        expires_at=(refresh if expires is None else expires) + to_wall,
        refresh_at=refresh + to_wall,
        last_status=_kept_bytes(last, resources),
        cseq_high=max(usage.cseq_high, dialog.local_cseq),
    )


#: The first byte of a msgpack array (fixarray, array 16, array 32); a single
#: status is a map.
_ARRAY_MARKERS: Final = frozenset((*range(0x90, 0xA0), 0xDC, 0xDD))


def _kept_bytes(last: StatusMessage | None, resources: Sequence[StatusMessage]) -> bytes | None:
    """A row's ``last_status``: the last word alone, as rows always held it, or
    with a resource list's statuses before it, as one array."""
    if resources:
        return encode_statuses([*resources, *(() if last is None else (last,))])
    return None if last is None else encode(last)


def _kept_statuses(record: DialogRecord) -> list[StatusMessage]:
    """What a row's ``last_status`` holds, in the order a joining client is told."""
    data = record.last_status
    if not data:
        return []
    try:
        if data[0] in _ARRAY_MARKERS:
            return decode_statuses(data)
        return [decode_status(data)]
    except ProtocolError as exc:
        log.warning("stored status of %s unreadable, dropped: %s", record.record, exc)
        return []


class Persistence:
    """Joins one shard's engine and fan-out to its :class:`DialogStore`."""

    def __init__(
        self,
        store: DialogStore,
        engine: Engine,
        fanout: FanOut,
        metrics: ShardMetrics,
        *,
        grace: float,
        rate: float,
        flush: Callable[[], None],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.engine = engine
        self.fanout = fanout
        self.m = metrics
        self.grace = grace
        #: Refreshes per second for restored dialogs that are due (0: no pacing).
        self.rate = rate
        self._flush = flush
        self._wall = wall
        self._seen = StoreStats()
        self._task: asyncio.Task[None] | None = None
        self._grace_handles: set[asyncio.TimerHandle] = set()
        #: Changes of live dialogs in partitions this node did not hold when they
        #: were noted: tried again once it holds more (a shard that started
        #: before its keeper claimed), else they stay this host's own.
        self._deferred: dict[int, tuple[Usage, Change]] = {}
        self._held_seen = 0
        #: Subscriptions the shard held before the store opened, to be written.
        self._catch_up: deque[int] = deque()
        store.on_lost = self.lost
        store.on_adopted = self.adopted
        store.on_batch = metrics.store_batch_seconds.observe

    # ------------------------------------------------------------------ start and stop

    async def start(self, *, late: bool = False) -> int:
        """Load this shard's stored dialogs and keep them; how many were kept.

        ``late``: the store opens after the shard ran without one (it could not
        be opened at start). The journal starts now, and every subscription the
        shard holds already is written too, a batch per tick; a stored dialog
        whose pair a client here has since subscribed to again gives way to the
        new dialog (its row is replaced, as at any start)."""
        if late:  # from here on: what changes is journaled, the rest caught up
            self._catch_up.extend(self.engine.usages)
            self.engine.changes = {}
        if not late:  # NOTIFYs for the dialogs about to come back wait for them
            self.engine.hold_unknown_notifies()
        try:
            records = await self.store.start()
            kept = self._take_back(records, adopted=False)
        finally:
            if self.engine.release_held_notifies():
                self._flush()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._count()
        if records:
            log.info("store: %d dialogs restored of %d stored", kept, len(records))
        return kept

    async def close(self, *, forget: bool) -> None:
        """Write what waits and stop. ``forget``: the service is stopping for good
        (SIGTERM), so no dialog left in the engine may be resumed later."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for handle in self._grace_handles:
            handle.cancel()
        self._grace_handles.clear()
        self._write(self.engine.take_changes())
        if forget:
            for usage in self.engine:
                self.store.delete(_key(usage))
        await self.store.close(release=forget)
        self._count()

    # ------------------------------------------------------------------ the journal

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(JOURNAL_TICK)
            try:
                changes = self.engine.take_changes()
                if self._catch_up:
                    changes = {**self._catching_up(changes), **changes}
                held = self.store.held
                if self._deferred and held != self._held_seen:
                    changes = {**self._deferred, **changes}
                    self._deferred = {}
                self._held_seen = held
                if changes:
                    self._write(changes)
                self._count()
            except Exception:
                # A bug here must not stop persistence for good.
                log.exception("store: journal")

    def _catching_up(
        self, noted: dict[int, tuple[Usage | RestingUsage, Change]]
    ) -> dict[int, tuple[Usage | RestingUsage, Change]]:
        """The next batch of the subscriptions held before the store opened."""
        batch: dict[int, tuple[Usage | RestingUsage, Change]] = {}
        usages, pending = self.engine.usages, self._catch_up
        for _ in range(min(CATCH_UP_BATCH, len(pending))):
            did = pending.popleft()
            found = usages.get(did)
            if found is not None and did not in noted:
                batch[did] = (found, Change.ROUTINE)
        return batch

    def _write(self, changes: dict[int, tuple[Usage | RestingUsage, Change]]) -> None:
        to_wall = self._wall() - self.engine.clock()
        for did, (usage, change) in changes.items():
            key = _key(usage)
            # What the engine holds for it now (ids are never reused): the
            # journaled object itself, or the same subscription read from rest
            # (not woken: writing a row is no reason to leave rest).
            live = self.engine.peek(did)
            if not self.store.owns(key):
                if live is not None:
                    self._deferred[did] = (live, change)
                continue  # not (yet) this node's partition: the row is not ours
            entry = self.fanout.dialogs.get(did)
            record = None
            if live is not None:
                if live.refresh_due is None and live.dialog is not None and not (
                    live.dialog.confirmed
                ):
                    continue  # a new dialog on its way: written once confirmed
                record = (
                    record_of(live, None, to_wall)
                    if entry is None
                    else record_of(live, entry.last, to_wall, entry.resource_statuses())
                )
            if record is not None:
                self.store.put(record, change)
            elif self.fanout.serving(key) in (None, did):
                # Gone, or without a dialog worth resuming; unless the key now
                # belongs to a newer subscription, whose row this is.
                self.store.delete(key)

    def _count(self) -> None:
        """Copy the store's running totals into the shard's metrics."""
        stats, seen, m = self.store.stats, self._seen, self.m
        m.store_rows_written.labels("batched").value += stats.rows_batched - seen.rows_batched
        m.store_rows_written.labels("synchronous").value += (
            stats.rows_synchronous - seen.rows_synchronous
        )
        m.store_errors.labels("unavailable").value += stats.unavailable - seen.unavailable
        m.store_errors.labels("refused").value += stats.refused - seen.refused
        m.store_dialogs.labels("restored").value += stats.restored - seen.restored
        m.store_dialogs.labels("adopted").value += stats.adopted - seen.adopted
        m.store_partitions_lost.value += stats.partitions_lost - seen.partitions_lost
        m.store_partitions_held.set(self.store.held)
        self._seen = dataclasses.replace(stats)

    # ------------------------------------------------------------------ coming back

    def _take_back(self, records: list[DialogRecord], *, adopted: bool) -> int:
        """Keep stored dialogs in the engine and the fan-out. A restart refreshes
        each at its time (or paced by ``rate`` when overdue); adopted dialogs
        are all refreshed now, paced, so the notifier learns the new Contact
        before it gives up on the old one."""
        engine = self.engine
        now = engine.clock()
        from_wall = now - self._wall()
        paced = 0
        kept: list[int] = []
        # In the order of the ids their Call-IDs name, so that each dialog gets
        # its old id back where it can (a NOTIFY then needs no index by Call-ID).
        for record in sorted(records, key=_named_id):
            serving = self.fanout.serving(record.key)
            if serving is not None:
                # A client here has a dialog of its own for the pair already:
                # that one is kept, and its record replaces the stored one.
                usage = engine.usage(serving)
                if usage is not None:
                    self._deferred[serving] = (usage, Change.ROUTE)
                    self._held_seen = -1
                continue
            if record.remote_tag is None:
                self.store.delete(record.key)  # never confirmed: nothing to refresh in
                continue
            refresh_at = record.refresh_at + from_wall
            if adopted or refresh_at <= now:
                refresh_at = now + (paced / self.rate if self.rate > 0 else 0.0)
                paced += 1
            did = self.fanout.restore(
                record.key, _kept_statuses(record), dialog_id_in(record.call_id)
            )
            if engine.restore(did, record, refresh_at, record.expires_at + from_wall):
                kept.append(did)
            else:
                self.fanout.finished(did)
                self.store.delete(record.key)
        if kept and self.grace >= 0:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def over() -> None:
                if handle is not None:
                    self._grace_handles.discard(handle)
                self._grace_over(kept)

            handle = loop.call_later(self.grace, over)
            self._grace_handles.add(handle)
        self._flush()
        return len(kept)

    def _grace_over(self, dids: list[int]) -> None:
        dropped = self.fanout.release_unclaimed(dids)
        if dropped:
            self.m.store_dialogs.labels("dropped").value += dropped
            log.info("store: %d restored dialogs unsubscribed: no client asked for them", dropped)
        self._flush()

    def adopted(self, records: list[DialogRecord]) -> None:
        """Dialogs of partitions this node just took over from a dead one."""
        kept = self._take_back(records, adopted=True)
        log.info("store: adopted %d dialogs", kept)

    def lost(self, partitions: frozenset[int]) -> None:
        """Partitions another node holds now: stop sending in their dialogs at
        once. A pair a client here still wants gets a dialog of its own (new
        Call-ID, kept in memory only); the rest are forgotten without a word."""
        engine, fanout = self.engine, self.fanout
        moved = 0
        for did, entry in list(fanout.dialogs.items()):
            record, subscriber = entry.record, entry.subscriber
            if partition_of(record, subscriber) not in partitions:
                continue
            moved += 1
            engine.abandon(did)
            if entry.serves:
                engine.subscribe(did, record, subscriber, entry.package)
            else:
                fanout.finished(did)
        if moved:
            log.warning("store: %d dialogs left to the node that holds their partitions", moved)
        self._flush()


def _key(usage: Usage | RestingUsage) -> DialogKey:
    return (usage.package, usage.record, usage.subscriber)


def _named_id(record: DialogRecord) -> int:
    return dialog_id_in(record.call_id) or 0
