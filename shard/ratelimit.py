"""A token bucket for out-of-dialog SUBSCRIBEs: the start-up storm guard.

After a restart a shard may hold hundreds of thousands of subscriptions that
all want a new dialog at once; ``max_subscribe_delay`` spreads them randomly,
and this bucket puts a hard ceiling on the rate whatever the cause (restart,
a server that terminated everything, a burst of new consumers). Each shard
gets its share of the service-wide ``sip.subscribe_rate``.
"""

from __future__ import annotations


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
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def next_token_at(self, now: float) -> float:
        """When the next whole token will be there (``now`` if one already is)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return now if missing <= 0 else now + missing / self.rate
