"""One heap of deadlines for every timer of a shard: transactions and subscriptions.

A million ``call_later`` handles cost a million heap entries plus a handle
object each, and cancelling one leaves it in the loop's heap anyway. Here the
engine keeps one asyncio timer (for ``next_deadline()``) and this queue keeps
the rest. Re-scheduling never searches the heap: it pushes a new entry and
makes the old one stale. Each owner carries the sequence number of its one
live entry (``timer_seq``, 0 = none), so a popped entry is live only when its
sequence number is still the owner's; this needs no side dictionary, which
at a million owners would cost more than the heap itself.
"""

from __future__ import annotations

import heapq
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


class TimerQueue(Generic[Owner]):
    """Deadlines of many owners in one binary heap with lazy deletion."""

    __slots__ = ("_heap", "_live", "_seq", "lag", "stale_skipped")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Owner]] = []
        self._seq = 0
        self._live = 0
        self.lag = LagHistogram()
        self.stale_skipped = 0

    def __len__(self) -> int:
        """Live entries: owners with an armed deadline (stale heap entries excluded)."""
        return self._live

    def schedule(self, owner: Owner, deadline: float | None) -> None:
        """Arm (or move) the owner's one deadline; None disarms it.

        Call it only when the deadline changed: every call pushes an entry.
        """
        if deadline is None:
            self.cancel(owner)
            return
        if owner.timer_seq == 0:
            self._live += 1
        self._seq += 1
        owner.timer_seq = self._seq
        heapq.heappush(self._heap, (deadline, self._seq, owner))
        if len(self._heap) > _COMPACT_MIN and len(self._heap) > _COMPACT_FACTOR * (self._live + 1):
            self._compact()

    def cancel(self, owner: Owner) -> None:
        """Disarm without touching the heap: the entry becomes stale."""
        if owner.timer_seq != 0:
            owner.timer_seq = 0
            self._live -= 1

    def pop_due(self, now: float, limit: int | None = None) -> list[Owner]:
        """Owners whose deadline is <= now, earliest first; each is disarmed.

        ``limit`` bounds the work done in one event-loop turn; the rest stays
        due for the next call. Every fired entry's lateness goes to ``lag``.
        """
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
        while heap:
            _, seq, owner = heap[0]
            if owner.timer_seq == seq:
                return heap[0][0]
            heapq.heappop(heap)
            self.stale_skipped += 1
        return None

    def heap_size(self) -> int:
        """Entries in the heap, stale ones included (for metrics)."""
        return len(self._heap)

    def _compact(self) -> None:
        live = [e for e in self._heap if e[2].timer_seq == e[1]]
        self.stale_skipped += len(self._heap) - len(live)
        heapq.heapify(live)
        self._heap = live
