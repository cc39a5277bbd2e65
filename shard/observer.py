"""What the engine reports about itself, as calls on an observer.

The engine counts nothing itself: it tells an :class:`EngineObserver` what
happened, and the service's observer (``shard/engine_metrics.py``) turns that
into shared-memory counters. Tests use :class:`RecordingObserver`, so no
metrics block is needed to drive an engine. The base class does nothing, so
an observer overrides only what it cares about.
"""

from __future__ import annotations

from collections import Counter

from .subscription import State

__all__ = ["EngineObserver", "RecordingObserver"]


def event_package(event: str) -> str:
    """The package of an Event header value: its parameters cut off."""
    return event.partition(";")[0].strip()


class EngineObserver:
    """Every call is a no-op here; each is one event worth counting."""

    __slots__ = ()

    def request_sent(self, kind: str) -> None:
        """A SUBSCRIBE left: ``initial``, ``refresh``, ``unsubscribe`` or ``retransmission``."""

    def notify_received(self, state: str) -> None:
        """A NOTIFY matched a dialog; ``state`` is its Subscription-State value."""

    def notify_package(self, event: str, matched: bool) -> None:
        """A NOTIFY arrived with this Event header value (its package, perhaps with
        parameters); ``matched``: one of our dialogs took it."""

    def list_refresh(self) -> None:
        """A resource list needed its full state again: a refresh goes out."""

    def auth_challenge(self, code: int, algorithm: str) -> None:
        """A 401/407 realm was answered with ``algorithm``."""

    def auth_stale_nonce(self) -> None:
        """A stale=true challenge was answered with its new nonce."""

    def auth_nonce_reuse(self) -> None:
        """A new request carried cached nonces: no challenge round trip."""

    def auth_failure(self, reason: str) -> None:
        """A challenge was not answered, or our credentials were refused."""

    def response_sent(self, code: int) -> None: ...

    def response_received(self, code: int) -> None: ...

    def retransmission_received(self) -> None:
        """A request we had already answered came again; the stored answer went back."""

    def transaction_timeout(self) -> None: ...

    def timer_armed(self, kind: str) -> None: ...

    def timer_fired(self, kind: str, lag: float) -> None:
        """A subscription or transaction timer ran ``lag`` seconds after its deadline."""

    def pace(self, per_second: float) -> None:
        """The shard's out-of-dialog SUBSCRIBE pace changed (shard/pace.py)."""

    def parse_error(self, kind: str) -> None:
        """A message or header the stack could not read (SipParseError kinds)."""

    def error(self, kind: str) -> None:
        """``parse``, ``pidf``, ``transport`` or ``internal``."""

    def failed(self, kind: str) -> None:
        """A Failure went to the consumers (a FailureKind value)."""

    def terminated(self, reason: str) -> None:
        """A TERMINATED status went to the consumers, with its reason."""

    def established(self) -> None:
        """A subscription reached the confirmed state."""

    def state_changed(self, before: State | None, after: State | None) -> None:
        """A subscription moved between states; None is outside the engine."""


class RecordingObserver(EngineObserver):
    """Counts every call by (event, argument), for tests and the fuzzer."""

    __slots__ = ("counts", "paces", "states")

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.paces: list[float] = []
        self.states: Counter[State] = Counter()

    def request_sent(self, kind: str) -> None:
        self.counts["request_sent", kind] += 1

    def notify_received(self, state: str) -> None:
        self.counts["notify_received", state] += 1

    def notify_package(self, event: str, matched: bool) -> None:
        package = event_package(event)
        self.counts["notify_package", f"{package}/{'matched' if matched else 'unmatched'}"] += 1

    def list_refresh(self) -> None:
        self.counts["list_refresh", ""] += 1

    def auth_challenge(self, code: int, algorithm: str) -> None:
        self.counts["auth_challenge", f"{code}/{algorithm}"] += 1

    def auth_stale_nonce(self) -> None:
        self.counts["auth_stale", ""] += 1

    def auth_nonce_reuse(self) -> None:
        self.counts["auth_reuse", ""] += 1

    def auth_failure(self, reason: str) -> None:
        self.counts["auth_failure", reason] += 1

    def response_sent(self, code: int) -> None:
        self.counts["response_sent", str(code)] += 1

    def response_received(self, code: int) -> None:
        self.counts["response_received", str(code)] += 1

    def retransmission_received(self) -> None:
        self.counts["retransmission_received", ""] += 1

    def transaction_timeout(self) -> None:
        self.counts["transaction_timeout", ""] += 1

    def timer_armed(self, kind: str) -> None:
        self.counts["timer_armed", kind] += 1

    def timer_fired(self, kind: str, lag: float) -> None:
        self.counts["timer_fired", kind] += 1

    def pace(self, per_second: float) -> None:
        self.paces.append(per_second)

    def parse_error(self, kind: str) -> None:
        self.counts["parse_error", kind] += 1

    def error(self, kind: str) -> None:
        self.counts["error", kind] += 1

    def failed(self, kind: str) -> None:
        self.counts["failed", kind] += 1

    def terminated(self, reason: str) -> None:
        self.counts["terminated", reason] += 1

    def established(self) -> None:
        self.counts["established", ""] += 1

    def state_changed(self, before: State | None, after: State | None) -> None:
        if before is not None:
            self.states[before] -= 1
        if after is not None:
            self.states[after] += 1
