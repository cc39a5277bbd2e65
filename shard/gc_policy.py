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

import gc

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
