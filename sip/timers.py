"""One queue of deadlines for every timer of a shard: transactions and subscriptions.

A million ``call_later`` handles cost a million heap entries plus a handle
object each, and cancelling one leaves it in the loop's heap anyway. Here the
engine keeps one asyncio timer (for ``next_deadline()``) and this queue keeps
the rest. Re-scheduling never searches: it adds a new entry and makes the old
one stale. Each owner carries the sequence number of its one live entry
(``timer_seq``, 0 = none), so an entry is live only when its sequence number
is still the owner's; this needs no side dictionary, which at a million owners
would cost more than the queue itself.

Only the deadlines of the next few seconds are in a binary heap of
(deadline, seq, owner) tuples. The others, nearly all of a shard's (a refresh
an hour away), wait in one bucket per second of plain arrays: a pointer, a
double and an int64 per entry, 24 bytes where a heap entry with its number
objects costs about 120, and no heap of a million to sift. A bucket moves into
the heap, dropping its stale entries, when the clock comes within
``HORIZON`` seconds of it (or when the heap runs dry and its deadline is the
next one).
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_left
from typing import Generic, Protocol, TypeVar

__all__ = ["LAG_BUCKETS", "LagHistogram", "TimerOwner", "TimerQueue"]


class TimerOwner(Protocol):
    """Anything that can own one deadline: it only has to remember a number."""

    timer_seq: int


Owner = TypeVar("Owner", bound=TimerOwner)

# Upper bounds (seconds) of the lag histogram buckets; Prometheus-style, the
# last bucket is +Inf and is implied.
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

# Rebuild the heap when stale entries outnumber live ones by this factor, so a
# subscription whose deadline moves often cannot grow the heap without bound.
_COMPACT_FACTOR = 2
_COMPACT_MIN = 1024

#: Seconds of deadlines a far bucket holds.
GRAIN = 1.0
#: How far ahead of the clock buckets move into the heap.
HORIZON = 2.0


class LagHistogram:
    """How late timers fire: the metrics layer turns this into a histogram."""

    __slots__ = ("buckets", "count", "max", "sum")

    def __init__(self) -> None:
        self.buckets: list[int] = [0] * (len(LAG_BUCKETS) + 1)  # not cumulative; last is +Inf
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def observe(self, lag: float) -> None:
        self.buckets[bisect_left(LAG_BUCKETS, lag)] += 1
        self.count += 1
        self.sum += lag
        self.max = max(self.max, lag)

    def observe_many(self, lags: list[float]) -> None:
        """One call per ``pop_due`` instead of one per timer: the pop loop stays tight."""
        buckets = self.buckets
        for lag in lags:
            buckets[bisect_left(LAG_BUCKETS, lag)] += 1
        self.count += len(lags)
        self.sum += sum(lags)
        peak = max(lags)
        self.max = max(self.max, peak)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, count of lags <= bound) pairs ending with +Inf, as Prometheus wants."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*LAG_BUCKETS, float("inf")), self.buckets, strict=True):
            running += n
            out.append((bound, running))
        return out


class _Bucket(Generic[Owner]):
    """One second of far deadlines, as parallel arrays: no object per entry."""

    __slots__ = ("at", "owners", "seqs")

    def __init__(self) -> None:
        self.owners: list[Owner] = []
        self.at = array("d")
        self.seqs = array("q")

    def add(self, owner: Owner, deadline: float, seq: int) -> None:
        self.owners.append(owner)
        self.at.append(deadline)
        self.seqs.append(seq)

    def live(self) -> _Bucket[Owner]:
        """A copy without the entries whose owner has moved on."""
        kept: _Bucket[Owner] = _Bucket()
        for owner, deadline, seq in zip(self.owners, self.at, self.seqs, strict=True):
            if owner.timer_seq == seq:
                kept.add(owner, deadline, seq)
        return kept


class TimerQueue(Generic[Owner]):
    """Deadlines of many owners: a heap for the next seconds, buckets beyond."""

    __slots__ = ("_buckets", "_far", "_heap", "_keys", "_live", "_near", "_seq", "lag",
                 "stale_skipped")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Owner]] = []
        #: Far deadlines by bucket number (``floor(deadline / GRAIN)``), and a
        #: heap of the bucket numbers in use.
        self._buckets: dict[int, _Bucket[Owner]] = {}
        self._keys: list[int] = []
        self._far = 0  # entries in the buckets, stale ones included
        #: Deadlines below this go into the heap; it only rises, always to a
        #: bucket boundary, so every far deadline is later than every heap one.
        self._near = -math.inf
        self._seq = 0
        self._live = 0
        self.lag = LagHistogram()
        self.stale_skipped = 0

    def __len__(self) -> int:
        """Live entries: owners with an armed deadline (stale entries excluded)."""
        return self._live

    def schedule(self, owner: Owner, deadline: float | None) -> None:
        """Arm (or move) the owner's one deadline; None disarms it.

        Call it only when the deadline changed: every call adds an entry.
        """
        if deadline is None:
            self.cancel(owner)
            return
        if owner.timer_seq == 0:
            self._live += 1
        self._seq += 1
        seq = self._seq
        owner.timer_seq = seq
        if deadline < self._near or not math.isfinite(deadline):
            heapq.heappush(self._heap, (deadline, seq, owner))
        else:
            key = int(deadline // GRAIN)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket()
                heapq.heappush(self._keys, key)
            bucket.add(owner, deadline, seq)
            self._far += 1
        size = len(self._heap) + self._far
        if size > _COMPACT_MIN and size > _COMPACT_FACTOR * (self._live + 1):
            self._compact()

    def cancel(self, owner: Owner) -> None:
        """Disarm without touching the queue: the entry becomes stale."""
        if owner.timer_seq != 0:
            owner.timer_seq = 0
            self._live -= 1

    def hand_over(self, old: Owner, new: Owner, deadline: float) -> None:
        """Give ``old``'s live entry, armed with ``deadline``, to ``new``: the
        same deadline and place in the queue, with no entry added and none left
        pinning ``old``. A subscription going to rest (or waking) changes object
        but not deadline.

        A far entry is found by binary search: a bucket's sequence numbers
        ascend, since entries are appended as numbered and compaction keeps
        their order. A near one is not searched for (the heap is in no order to
        search): it is armed anew, and the old entry, stale, pins ``old`` only
        until it is popped, within ``HORIZON`` seconds."""
        seq = old.timer_seq
        if seq == 0:
            return
        bucket = None
        if deadline >= self._near and math.isfinite(deadline):
            bucket = self._buckets.get(int(deadline // GRAIN))
        if bucket is not None:
            i = bisect_left(bucket.seqs, seq)
            if i < len(bucket.seqs) and bucket.seqs[i] == seq and bucket.owners[i] is old:
                bucket.owners[i] = new
                new.timer_seq = seq
                old.timer_seq = 0
                return
        self.cancel(old)
        self.schedule(new, deadline)

    def pop_due(self, now: float, limit: int | None = None) -> list[Owner]:
        """Owners whose deadline is <= now, earliest first; each is disarmed.

        ``limit`` bounds the work done in one event-loop turn; the rest stays
        due for the next call. Every fired entry's lateness goes to ``lag``.
        """
        self._bring_near(now + HORIZON)
        heap = self._heap
        due: list[Owner] = []
        lags: list[float] = []
        pop = heapq.heappop
        budget = -1 if limit is None else limit
        while heap and heap[0][0] <= now and budget != 0:
            deadline, seq, owner = pop(heap)
            if owner.timer_seq != seq:
                self.stale_skipped += 1
                continue
            owner.timer_seq = 0
            lags.append(now - deadline)
            due.append(owner)
            budget -= 1
        self._live -= len(due)
        if lags:
            self.lag.observe_many(lags)
        return due

    def next_deadline(self) -> float | None:
        """The earliest live deadline, dropping stale entries on the way."""
        heap = self._heap
        while True:
            keys = self._keys
            while heap:
                deadline, seq, owner = heap[0]
                if owner.timer_seq != seq:
                    heapq.heappop(heap)
                    self.stale_skipped += 1
                elif keys and deadline >= keys[0] * GRAIN:
                    break  # an infinite deadline: a far bucket comes first
                else:
                    return deadline
            if not keys:
                return heap[0][0] if heap else None
            # The heap ran dry: the next far bucket holds the next deadline.
            self._bring_near((keys[0] + 1) * GRAIN)

    def heap_size(self) -> int:
        """Entries in the queue, stale ones included (for metrics)."""
        return len(self._heap) + self._far

    def _bring_near(self, until: float) -> None:
        """Move the buckets that start before ``until`` into the heap."""
        keys = self._keys
        if not keys or keys[0] * GRAIN >= until:
            return
        heap = self._heap
        while keys and keys[0] * GRAIN < until:
            key = heapq.heappop(keys)
            bucket = self._buckets.pop(key)
            self._far -= len(bucket.owners)
            for owner, deadline, seq in zip(bucket.owners, bucket.at, bucket.seqs, strict=True):
                if owner.timer_seq == seq:
                    heapq.heappush(heap, (deadline, seq, owner))
                else:
                    self.stale_skipped += 1
            self._near = max(self._near, (key + 1) * GRAIN)

    def _compact(self) -> None:
        live = [e for e in self._heap if e[2].timer_seq == e[1]]
        stale = len(self._heap) - len(live)
        heapq.heapify(live)
        self._heap = live
        far = 0
        for key, bucket in list(self._buckets.items()):
            kept = bucket.live()
            stale += len(bucket.owners) - len(kept.owners)
            far += len(kept.owners)
            self._buckets[key] = kept  # an empty bucket stays until its turn
        self._far = far
        self.stale_skipped += stale
