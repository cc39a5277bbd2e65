"""Failover over a resolved target list (RFC 3263 §4.3).

A request goes to the first target of its list; when that target times out,
cannot be reached, or answers 503, the request goes to the next one. A target
that failed is held back for a while (the 503's Retry-After, else a default
hold) and every other request skips it meanwhile, so one dead server costs one
timeout, not one per subscription. Time is always passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from .destination import Destination


class FailedTargets:
    """Targets that failed recently, each with the time its hold ends."""

    def __init__(self, hold: float = 30.0, size: int = 4096) -> None:
        self.hold = hold
        self.size = size
        self._until: OrderedDict[Destination, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def mark(self, target: Destination, now: float, retry_after: float | None = None) -> None:
        """``target`` failed: skip it for ``retry_after`` seconds, or the default hold."""
        hold = self.hold if retry_after is None else retry_after
        if hold <= 0:
            self._until.pop(target, None)
            return
        self._until[target] = max(self._until.get(target, 0.0), now + hold)
        self._until.move_to_end(target)
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def succeeded(self, target: Destination) -> None:
        """``target`` answered: it is usable again at once."""
        self._until.pop(target, None)

    def held_until(self, target: Destination, now: float) -> float | None:
        """When ``target``'s hold ends, or None when it is usable now."""
        until = self._until.get(target)
        if until is None:
            return None
        if now >= until:
            del self._until[target]
            return None
        return until


class Failover:
    """One request's walk down its target list; ``current`` is where to send it."""

    def __init__(self, targets: Sequence[Destination], failed: FailedTargets, now: float) -> None:
        self.targets = tuple(targets)
        self.failed = failed
        self._index = -1
        self.current: Destination | None = None
        self._advance(now)

    def next(self, now: float, retry_after: float | None = None) -> Destination | None:
        """The current target failed (timeout, transport error, 503 with its
        Retry-After): hold it back and return the next usable target, or None
        when the list is exhausted."""
        if self.current is not None:
            self.failed.mark(self.current, now, retry_after)
        self._advance(now)
        return self.current

    def succeeded(self) -> None:
        """The current target answered: clear any hold on it."""
        if self.current is not None:
            self.failed.succeeded(self.current)

    def retry_at(self, now: float) -> float | None:
        """With no usable target left: when the first held-back target of the list
        may be tried again (None if none is held back, or one is usable)."""
        ends = [self.failed.held_until(t, now) for t in self.targets]
        if any(e is None for e in ends):
            return None
        return min(e for e in ends if e is not None) if ends else None

    def _advance(self, now: float) -> None:
        while True:
            self._index += 1
            if self._index >= len(self.targets):
                self.current = None
                return
            candidate = self.targets[self._index]
            if self.failed.held_until(candidate, now) is None:
                self.current = candidate
                return
