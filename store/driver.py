"""``DialogStore``: the store as a shard uses it, on its event loop.

Everything that touches the database runs in one writer thread of the store's
own, so the loop never waits for a disk or a socket and the batches reach the
database in the order they were taken. The shard:

* ``records = await store.start()``: its dialogs (its share by the stable hash,
  in the partitions this node holds), each already ``adopted()`` so its next
  CSeq lies above the high-water mark;
* ``store.put(record, change)``: buffered; urgent changes go at the next tick;
* ``await store.put_now(record, change)`` / ``await store.delete_now(key)``:
  creation, route or target change, termination, durable before it returns;
* ``await store.reserve(record, cseq)`` before sending a CSeq above
  ``record.cseq_high``;
* ``store.owns(key)``: may it still send for this dialog;
* callbacks ``on_lost(partitions)`` (stop sending for their dialogs at once)
  and ``on_adopted(records)`` (dialogs of partitions this node just took over);
* ``await store.close()`` at the end: last batch, leases released.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from .backend import Backend, Held, StoreUnavailableError
from .buffer import Batch, WriteBehind
from .partition import partition_of
from .record import Change, DialogKey, DialogRecord

__all__ = ["DialogStore", "StoreStats", "WriteOutcome"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class WriteOutcome(enum.Enum):
    """What became of a synchronous write."""

    WRITTEN = "written"
    #: The partition is no longer this node's: do not send for the dialog.
    REFUSED = "refused"
    #: The database is unreachable: kept in the buffer and retried.
    DEFERRED = "deferred"


@dataclass(slots=True)
class StoreStats:
    """Running totals behind the store_* metric families; the shard copies them
    (or their increase) into its metrics. Batch durations go to ``on_batch``."""

    #: store_rows_written_total{mode="batched"} and {mode="synchronous"}
    rows_batched: int = 0
    rows_synchronous: int = 0
    #: store_errors_total{kind="unavailable"} and {kind="refused"} (rows)
    unavailable: int = 0
    refused: int = 0
    #: store_dialogs_total{event="restored"} and {event="adopted"}
    restored: int = 0
    adopted: int = 0
    #: store_partitions_lost_total (store_partitions_held: DialogStore.held)
    partitions_lost: int = 0


class DialogStore:
    """A shard's view of the store (see the module docstring for the calls)."""

    def __init__(
        self,
        open_backend: Callable[[], Backend],
        *,
        shard: int,
        shards: int,
        interval: float,
        lease_seconds: float,
        keeper: bool,
        on_lost: Callable[[frozenset[int]], None] = lambda parts: None,
        on_adopted: Callable[[list[DialogRecord]], None] = lambda records: None,
        on_batch: Callable[[float], None] = lambda seconds: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_backend
        self.shard, self.shards = shard, shards
        self.lease_seconds = lease_seconds
        #: Only the keeper (one shard per node) claims partitions; all renew.
        self.keeper = keeper
        self.on_lost, self.on_adopted, self.on_batch = on_lost, on_adopted, on_batch
        self._clock = clock
        self.buffer = WriteBehind(interval, clock)
        self.stats = StoreStats()
        self._backend: Backend | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"store-{shard}")
        self._held: dict[int, int] = {}
        self._valid_until: dict[int, float] = {}
        self._next_round = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    @property
    def backend(self) -> Backend:
        assert self._backend is not None, "start() first"
        return self._backend

    # ---- start and stop ----------------------------------------------------
    async def start(self) -> list[DialogRecord]:
        """Open (and upgrade) the database, take part in the leases, and return
        this shard's dialogs, ready to be resumed."""
        self._backend = await self._run(self._open)
        await self._lease_round(announce=False)
        records = await self._run(
            lambda: self.backend.load(self.shard, self.shards, set(self._held))
        )
        self.stats.restored += len(records)
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return [r.adopted() for r in records]

    async def close(self, *, release: bool = True) -> None:
        """Write what waits, give up this node's leases (``release``), stop."""
        if self._task is not None:
            # Asked to stop, not cancelled: a cancel that arrives as the wake-up
            # event fires is lost inside wait_for (Python 3.11).
            self._closing = True
            self._wake.set()
            await self._task
        if self._backend is not None:
            with contextlib.suppress(StoreUnavailableError):
                await self.flush()
            if release and self.keeper and self._held:
                with contextlib.suppress(StoreUnavailableError):
                    await self._run(lambda: self.backend.release(list(self._held)))
            await self._run(self.backend.close)
        self._thread.shutdown(wait=True)

    @property
    def held(self) -> int:
        """Partitions this node holds, as this shard knows (store_partitions_held)."""
        return len(self._held)

    # ---- changes -------------------------------------------------------------
    def owns(self, key: DialogKey) -> bool:
        """Does this node hold the dialog's partition, by its own clock too?"""
        part = partition_of(key[1], key[2])
        return part in self._held and self._clock() < self._valid_until.get(part, 0.0)

    def put(self, record: DialogRecord, change: Change = Change.ROUTINE) -> None:
        """Keep the newest state of a dialog; written in the next batch."""
        if record.local_cseq > record.cseq_high:
            raise ValueError("reserve() the CSeq before recording it")
        before = self.buffer.next_deadline()
        self.buffer.put(record, change)
        self._wake_if_sooner(before)

    def delete(self, key: DialogKey) -> None:
        """The dialog ended; its row goes in the next batch."""
        before = self.buffer.next_deadline()
        self.buffer.delete(key)
        self._wake_if_sooner(before)

    def _wake_if_sooner(self, before: float | None) -> None:
        """Wake the flushing task only when the batch became due sooner: most
        changes join a batch that is already scheduled and cost no wake-up."""
        after = self.buffer.next_deadline()
        if after is not None and (before is None or after < before):
            self._wake.set()

    async def put_now(self, record: DialogRecord, change: Change = Change.CREATED) -> WriteOutcome:
        """Put and write at once, with everything waiting before it."""
        if change is Change.CREATED:
            record = record.with_cseq_reserved(record.local_cseq)
        self.put(record, change)
        return await self._flush_for(record.key)

    async def delete_now(self, key: DialogKey) -> WriteOutcome:
        self.buffer.delete(key)
        return await self._flush_for(key)

    async def reserve(self, record: DialogRecord, cseq: int) -> tuple[DialogRecord, WriteOutcome]:
        """The record with CSeqs reserved up to a block above ``cseq``, written."""
        reserved = record.with_cseq_reserved(cseq)
        self.buffer.put(reserved, Change.ROUTE)
        return reserved, await self._flush_for(record.key)

    async def _flush_for(self, key: DialogKey) -> WriteOutcome:
        refused = await self.flush(synchronous=True)
        if refused is None:
            return WriteOutcome.DEFERRED
        if partition_of(key[1], key[2]) in refused:
            return WriteOutcome.REFUSED
        return WriteOutcome.WRITTEN

    async def flush(self, *, synchronous: bool = False) -> frozenset[int] | None:
        """Write the buffer as one batch; the partitions refused, or None when the
        database could not be reached (the batch stays buffered). ``synchronous``:
        a caller waits for it (counted apart)."""
        batch = self.buffer.take()
        if not batch:
            return frozenset()
        epochs = dict(self._held)
        started = time.perf_counter()
        try:
            refused = await self._run(lambda: self.backend.write(batch, epochs))
        except StoreUnavailableError:
            self.stats.unavailable += 1
            self.buffer.give_back(batch)
            return None
        self.on_batch(time.perf_counter() - started)
        not_written = _rows_in(batch, refused) if refused else 0
        if synchronous:
            self.stats.rows_synchronous += len(batch) - not_written
        else:
            self.stats.rows_batched += len(batch) - not_written
        if refused:
            self.stats.refused += not_written
            self._lose(refused)
        return refused

    # ---- leases --------------------------------------------------------------
    def _lose(self, parts: frozenset[int] | set[int]) -> None:
        lost = frozenset(p for p in parts if p in self._held)
        for p in lost:
            del self._held[p]
            self._valid_until.pop(p, None)
        if lost:
            self.stats.partitions_lost += len(lost)
            self.on_lost(lost)

    async def _lease_round(self, *, announce: bool = True) -> None:
        asked = self._clock()
        try:
            now_held: dict[int, Held] = await self._run(
                lambda: self.backend.lease_round(dict(self._held), claim=self.keeper)
            )
        except StoreUnavailableError:
            self.stats.unavailable += 1
            self._next_round = self._clock() + 1.0
            return
        # Stop a little before the database would let another node claim.
        margin = self.lease_seconds / 10
        lost = {p for p, e in self._held.items() if p not in now_held or now_held[p].epoch != e}
        self._lose(lost)
        gained = {p for p, h in now_held.items() if p not in self._held}
        for p, h in now_held.items():
            self._held[p] = h.epoch
            self._valid_until[p] = (
                math.inf if math.isinf(h.seconds_left) else asked + h.seconds_left - margin
            )
        self._next_round = self._clock() + self.lease_seconds / 3
        if gained and announce:
            try:
                records = await self._run(
                    lambda: self.backend.load(self.shard, self.shards, gained)
                )
            except StoreUnavailableError:
                # Held but unread: forget them here, so the next round gains them again.
                self.stats.unavailable += 1
                for p in gained:
                    del self._held[p]
                    del self._valid_until[p]
                self._next_round = self._clock() + 1.0
                return
            self.stats.adopted += len(records)
            if records:
                self.on_adopted([r.adopted() for r in records])

    def _expire(self) -> None:
        now = self._clock()
        self._lose({p for p, until in self._valid_until.items() if now >= until})

    def next_deadline(self) -> float:
        deadlines = [self._next_round, *self._valid_until.values()]
        due = self.buffer.next_deadline()
        if due is not None:
            deadlines.append(due)
        return min(deadlines)

    async def _loop(self) -> None:
        while not self._closing:
            delay = self.next_deadline() - self._clock()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(delay, 60.0))
                continue  # asked to close, or a new deadline: look again
            try:
                self._expire()
                if self.buffer.is_due():
                    await self.flush()
                if self._clock() >= self._next_round:
                    await self._lease_round()
            except Exception:
                # A bug must not stop the writes for good: say so, and go on.
                log.exception("store: shard %d", self.shard)
                await asyncio.sleep(1.0)


def _rows_in(batch: Batch, parts: frozenset[int]) -> int:
    return sum(1 for k in batch.touched() if partition_of(k[1], k[2]) in parts)
