"""A set-up rate that adapts to load: AIMD under the configured ceiling.

A fixed ``sip.subscribe_rate`` that is right on a quiet machine is wrong on a
busy one: a shard that cannot keep up with the dialogs it opens answers
NOTIFYs late, the server retransmits them, its own SUBSCRIBEs time out and are
sent again on new dialogs, and the storm feeds itself. So the configured rate
is a ceiling and each shard finds its own pace from signals of its own
overload, which it already has:

* a NOTIFY the server had to send again (our answer was late, or lost),
* a timer that fired late by more than ``LAG_LIMIT`` (the loop is saturated).

Its own retransmissions and transaction timeouts are not signals: a server
that is away or a lossy link causes them as well, and a pace cut for those
would slow the recovery once the server is back (measured: 40 subscriptions
active 7 s after the server's return instead of 0.8 s).

Each congestion signal cuts the pace by ``DECREASE`` at most once per
``WINDOW`` (one cut per burst of symptoms, as TCP cuts once per round trip);
without one the pace grows by ``ceiling / RAMP_SECONDS`` per second back to the
ceiling. It never goes below ``floor``. Plain numbers and an injected clock:
tested on a virtual clock.
"""

from __future__ import annotations

__all__ = ["DECREASE", "LAG_LIMIT", "RAMP_SECONDS", "WINDOW", "AdaptivePace"]

#: Multiplicative decrease per congestion window.
DECREASE = 0.7
#: Seconds within which further signals count as the same congestion.
WINDOW = 1.0
#: Seconds to grow from the floor back to the ceiling without congestion.
RAMP_SECONDS = 20.0
#: A timer later than this is a congestion signal, seconds.
LAG_LIMIT = 0.1
#: The lowest pace as a share of the ceiling (and at least MIN_FLOOR per second).
FLOOR_SHARE = 0.02
MIN_FLOOR = 1.0


class AdaptivePace:
    """The pace of out-of-dialog SUBSCRIBEs of one shard, per second."""

    __slots__ = ("_at", "_cut_at", "ceiling", "cuts", "floor", "rate", "step")

    def __init__(self, ceiling: float) -> None:
        if ceiling <= 0:
            raise ValueError(f"ceiling must be positive, got {ceiling}")
        self.ceiling = ceiling
        self.floor = min(ceiling, max(MIN_FLOOR, ceiling * FLOOR_SHARE))
        self.step = ceiling / RAMP_SECONDS
        self.rate = ceiling
        self.cuts = 0
        self._at: float | None = None
        self._cut_at: float | None = None

    def current(self, now: float) -> float:
        """The pace now: grown since the last look, unless congestion is recent."""
        at = self._at
        self._at = now
        if at is not None and now > at and self.rate < self.ceiling:
            quiet_since = at if self._cut_at is None else max(at, self._cut_at + WINDOW)
            if now > quiet_since:
                self.rate = min(self.ceiling, self.rate + (now - quiet_since) * self.step)
        return self.rate

    def congested(self, now: float) -> bool:
        """A congestion signal: cut the pace, once per window. True if it was cut."""
        self.current(now)
        if self._cut_at is not None and now - self._cut_at < WINDOW:
            return False
        self._cut_at = now
        self.rate = max(self.floor, self.rate * DECREASE)
        self.cuts += 1
        return True
