"""A token bucket for out-of-dialog SUBSCRIBEs: the start-up storm guard.

After a restart a shard may hold hundreds of thousands of subscriptions that
all want a new dialog at once; ``max_subscribe_delay`` spreads them randomly,
and this bucket puts a hard ceiling on the rate whatever the cause (restart,
a server that terminated everything, a burst of new consumers). Each shard
gets its share of the service-wide ``sip.subscribe_rate``; what exceeds it
waits in the :class:`HoldQueue`, oldest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Tokens within this of a whole one count as whole: refills by a rate such as
#: 1.4/s leave 0.99999999999993, and a bucket that waits "5e-14 s" for the rest
#: asks to be woken at the same float time forever.
_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def next_token_at(self, now: float) -> float:
        """When the next whole token will be there (``now`` if one already is)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return now if missing <= _EPSILON else now + missing / self.rate


class HoldQueue(Generic[T]):
    """Out-of-dialog sends beyond the rate, in arrival order, keyed by subscription.

    A key asked again replaces its held item and goes to the back; nothing jumps
    the queue while anything is held, so the order of the asks is the order of
    the sends. Held items that went stale while they waited are skipped.
    """

    __slots__ = ("_held", "bucket")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.bucket = TokenBucket(rate, burst)
        self._held: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._held)

    def admit(self, key: int, item: T, now: float) -> bool:
        """True: send it now (a token was spent); False: it waits in the queue."""
        self._held.pop(key, None)
        if self._held or not self.bucket.take(now):
            self._held[key] = item
            return False
        return True

    def discard(self, key: int) -> T | None:
        return self._held.pop(key, None)

    def release(self, now: float, live: Callable[[T], bool]) -> list[T]:
        """Held items whose turn came, oldest first, as tokens allow."""
        out: list[T] = []
        held = self._held
        while held:
            key = next(iter(held))
            item = held[key]
            if not live(item):
                del held[key]  # superseded while it waited: no token spent
                continue
            if not self.bucket.take(now):
                break
            del held[key]
            out.append(item)
        return out

    def next_release(self, now: float) -> float | None:
        """When the oldest held item may leave, or None when nothing is held."""
        return self.bucket.next_token_at(now) if self._held else None
