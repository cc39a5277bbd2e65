"""The engine's observer for the service: its events as shared-memory metrics.

Every series is bound once at start-up, so each event costs a dict hit and an
addition (docs/metrics.md). Unknown label values fall back to ``other`` where
the catalogue has one and are dropped otherwise: a peer's text never creates a
series.
"""

from __future__ import annotations

from ..metrics.catalog import EVENT_PACKAGES, TIMER_KINDS, state_label
from ..metrics.shard import Counter, ShardMetrics
from .observer import EngineObserver, event_package
from .subscription import State

__all__ = ["MetricsObserver"]



def _bump(table: dict[str, Counter], key: str, fallback: str = "other") -> None:
    child = table.get(key) or table.get(fallback)
    if child is not None:
        child.value += 1


class MetricsObserver(EngineObserver):
    """Counts into one shard's :class:`ShardMetrics`."""

    __slots__ = (
        "_armed", "_errors", "_failed", "_fired", "_list_refreshes", "_notify",
        "_notify_other", "_packages", "_parse", "_retrans_received", "_retrans_sent", "_sent",
        "_states", "_term", "m",
    )

    def __init__(self, metrics: ShardMetrics) -> None:
        m = self.m = metrics
        sent = m.sip_requests_sent
        self._sent = {
            k: sent.labels("SUBSCRIBE", k)
            for k in ("initial", "refresh", "unsubscribe", "retransmission")
        }
        notify = m.sip_notify_received
        self._notify = {k: notify.labels(k) for k in ("active", "pending", "terminated")}
        self._notify_other = notify.labels("other")
        by_package = m.sip_notify_by_package
        self._packages = {
            (p, matched): by_package.labels(p, "matched" if matched else "unmatched")
            for p in EVENT_PACKAGES
            for matched in (True, False)
        }
        self._list_refreshes = m.list_refreshes
        self._armed = {k: m.timers_armed.labels(k) for k in TIMER_KINDS.values}
        self._fired = {k: m.timers_fired.labels(k) for k in TIMER_KINDS.values}
        self._parse = {
            k: m.sip_parse_errors.labels(k) for k in m.sip_parse_errors.family.labels[0].values
        }
        self._errors = {k: m.errors.labels(k) for k in m.errors.family.labels[0].values}
        failed = m.subscriptions_failed
        self._failed = {k: failed.labels(k) for k in failed.family.labels[0].values}
        term = m.subscriptions_terminated
        self._term = {k: term.labels(k) for k in term.family.labels[0].values}
        self._states = {s: m.subscriptions.labels(state_label(s)) for s in State}
        self._retrans_sent = m.sip_retransmissions.labels("sent")
        self._retrans_received = m.sip_retransmissions.labels("received")

    def request_sent(self, kind: str) -> None:
        self._sent[kind].value += 1
        if kind == "retransmission":
            self._retrans_sent.value += 1

    def notify_received(self, state: str) -> None:
        (self._notify.get(state) or self._notify_other).value += 1

    def notify_package(self, event: str, matched: bool) -> None:
        # The header is nearly always the bare package: one lookup, no parsing.
        child = self._packages.get((event, matched))
        if child is None:
            key = (event_package(event), matched)
            child = self._packages.get(key) or self._packages[("other", matched)]
        child.value += 1

    def list_refresh(self) -> None:
        self._list_refreshes.value += 1

    def auth_challenge(self, code: int, algorithm: str) -> None:
        table = self.m.auth_challenges
        key = algorithm if algorithm in table.family.labels[1].values else "other"
        table.labels(str(code), key).value += 1

    def auth_stale_nonce(self) -> None:
        self.m.auth_stale_nonces.value += 1

    def auth_nonce_reuse(self) -> None:
        self.m.auth_nonce_reuses.value += 1

    def auth_failure(self, reason: str) -> None:
        table = self.m.auth_failures
        if reason in table.family.labels[0].values:
            table.labels(reason).value += 1

    def response_sent(self, code: int) -> None:
        self.m.response_sent(code)

    def response_received(self, code: int) -> None:
        self.m.response_received(code)

    def retransmission_received(self) -> None:
        self._retrans_received.value += 1

    def transaction_timeout(self) -> None:
        self.m.sip_transaction_timeouts.value += 1

    def timer_armed(self, kind: str) -> None:
        _bump(self._armed, kind)

    def timer_fired(self, kind: str, lag: float) -> None:
        _bump(self._fired, kind)
        self.m.timer_lag_seconds.observe(lag)

    def pace(self, per_second: float) -> None:
        self.m.sip_subscribe_pace.set(per_second)

    def parse_error(self, kind: str) -> None:
        _bump(self._parse, kind)

    def error(self, kind: str) -> None:
        _bump(self._errors, kind)

    def failed(self, kind: str) -> None:
        _bump(self._failed, kind)

    def terminated(self, reason: str) -> None:
        _bump(self._term, reason)

    def established(self) -> None:
        self.m.subscriptions_established.value += 1

    def state_changed(self, before: State | None, after: State | None) -> None:
        if before is not None:
            self._states[before].value -= 1
        if after is not None:
            self._states[after].value += 1
