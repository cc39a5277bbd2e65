"""Garbage-collector settings for a shard holding many long-lived subscriptions.

A shard's heap is mostly subscriptions, dialogs and timers that live for hours;
every full collection walks all of them (tens of milliseconds at thousands of
dialogs, seconds at a million), and shows up as timer lag and NOTIFY latency.
So: young collections less often (the NOTIFY path allocates many short-lived,
acyclic objects), and once the set of subscriptions has grown, one collection
followed by ``gc.freeze()``, which moves everything alive into a permanent
generation that later collections skip. Reference counting still frees frozen
objects; only reference cycles among them would stay, and the engine's
per-subscription objects form none.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

THRESHOLDS = (10_000, 20, 100)
GROWTH = 0.2
"""Freeze again once the subscriptions grew by this share since the last freeze."""
MIN_GROWTH = 1_000


class GcPolicy:
    """Call ``tick(subscriptions)`` now and then (the shard does every 10 s)."""

    def __init__(self) -> None:
        gc.set_threshold(*THRESHOLDS)
        self.frozen_at = 0
        self.freezes = 0

    def tick(self, subscriptions: int) -> bool:
        """Collect and freeze if the subscriptions grew enough; True if it did."""
        grown = subscriptions - self.frozen_at
        if grown < MIN_GROWTH or grown < GROWTH * max(self.frozen_at, 1):
            return False
        gc.collect()
        gc.freeze()
        self.frozen_at = subscriptions
        self.freezes += 1
        return True


class GcPauses:
    """Reports how long each collection stopped the process, by the oldest
    generation it collected (``gc.callbacks``): a full collection walks every
    object not frozen, and at a million subscriptions that shows as timer lag
    nothing else explains. ``close`` stops the reports."""

    def __init__(
        self,
        observe: Callable[[int, float], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._observe = observe
        self._clock = clock
        self._started = 0.0
        gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
        else:
            self._observe(int(info["generation"]), self._clock() - self._started)

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_collection)
