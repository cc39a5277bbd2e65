"""Random event sequences against one Subscription, checked against invariants.

The test plays a well-behaved engine: it tracks the dialog and the one
outstanding SUBSCRIBE the actions imply, answers only what was sent (plus
deliberate stale and duplicate answers), and never lets the clock pass a
deadline without firing it. The invariants are what the engine and the
consumers rely on.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from presence_b2b.presence.status import SubscriptionState
from presence_b2b.shard.subscription import (
    MIN_RETRY_DELAY,
    DropDialog,
    EmitFailure,
    EmitStatus,
    MachineParams,
    NotifyInfo,
    ResponseInfo,
    SendInDialog,
    SendInitial,
    Subscription,
    TimerKind,
)

CODES = [200, 202, 301, 302, 305, 400, 403, 404, 408, 410, 423, 480, 481, 486, 489, 500, 501,
         503, 603, 604, 180]
SUBSTATES = ["active", "pending", "terminated", "terminated", "bogus"]
REASONS = [None, "deactivated", "timeout", "probation", "giveup", "rejected", "noresource",
           "invariant", "whatever"]
SECONDS = st.none() | st.sampled_from([0, 1, 5, 30, 60, 3600, 7200])


class SubscriptionMachine(RuleBasedStateMachine):
    sub: Subscription

    @initialize(
        default_expiration=st.sampled_from([60, 600, 3600]),
        on_error_retry_time=st.sampled_from([1, 5, 120]),
        wait_for_term_notify=st.sampled_from([0, 1, 30]),
        resubscribe_delta=st.sampled_from([0, 30]),
        min_resubscribe_time=st.sampled_from([1, 30]),
        max_subscribe_delay=st.sampled_from([0, 0, 5]),
        t1=st.sampled_from([0.5, 0.01]),
        seed=st.integers(0, 2**16),
    )
    def start(self, t1: float, seed: int, **params: Any) -> None:
        import random

        self.sub = Subscription(
            1, "sip:r@example.com", "sip:s@example.com", MachineParams(t1=t1, **params),
            rng=random.Random(seed),
        )
        self.now = 0.0
        self.dialog = False
        self.outstanding: int | None = None
        self.old_txns: list[int] = []
        self.unsubscribed = False  # unsubscribe() called while the subscription was live
        self.final_statuses = 0
        self.over = False  # the consumer has been told the last thing it will hear
        self.apply(self.sub.start(self.now))

    # ------------------------------------------------------------ the engine's side

    def apply(self, actions: list[Any]) -> None:
        for a in actions:
            assert not self.over, f"{a} after the final message"
            if isinstance(a, DropDialog):
                self.dialog = False
                self._forget_outstanding()
            elif isinstance(a, SendInitial):
                assert not self.dialog, "a new dialog while the old one was not dropped"
                assert self.outstanding is None, "two SUBSCRIBEs outstanding"
                assert a.expires > 0
                self.dialog = True
                self.outstanding = a.txn
            elif isinstance(a, SendInDialog):
                assert self.dialog, "in-dialog SUBSCRIBE without a dialog"
                assert self.outstanding is None, "two SUBSCRIBEs outstanding"
                assert a.expires >= 0
                self.outstanding = a.txn
            elif isinstance(a, EmitStatus):
                if self.unsubscribed:
                    assert a.state is SubscriptionState.TERMINATED, "status after unsubscribe"
                    self.final_statuses += 1
                    self.over = True
            elif isinstance(a, EmitFailure):
                assert not self.unsubscribed, "failure reported after unsubscribe"
                assert a.retry_in is None or a.retry_in >= 1.0
                if a.retry_in is None:
                    self.over = True
            else:  # pragma: no cover
                raise AssertionError(f"unknown action {a!r}")

    def _forget_outstanding(self) -> None:
        if self.outstanding is not None:
            self.old_txns.append(self.outstanding)
        self.outstanding = None

    # ------------------------------------------------------------ rules

    @rule(
        code=st.sampled_from(CODES),
        expires=SECONDS,
        min_expires=SECONDS,
        retry_after=SECONDS,
        contacts=st.sampled_from(
            [(), ("sip:elsewhere@example.com",), ("sip:a@one.example", "sip:a@two.example")]
        ),
    )
    def response(
        self, code: int, expires: int | None, min_expires: int | None,
        retry_after: int | None, contacts: tuple[str, ...],
    ) -> None:
        txn = self.outstanding
        r = ResponseInfo(code, "", expires, min_expires, retry_after, contacts, txn)
        if txn is None:
            assert self.sub.on_response(r, self.now) == []
            return
        if code >= 200:
            self._forget_outstanding()
        self.apply(self.sub.on_response(r, self.now))

    @precondition(lambda self: bool(self.old_txns))
    @rule(code=st.sampled_from(CODES), index=st.integers(0, 100))
    def stale_response(self, code: int, index: int) -> None:
        txn = self.old_txns[index % len(self.old_txns)]
        state = self.sub.state
        assert self.sub.on_response(ResponseInfo(code, txn=txn), self.now) == []
        assert self.sub.on_timeout(self.now, txn) == []
        assert self.sub.on_transport_error(self.now, txn, "reset") == []
        assert self.sub.state is state

    @precondition(lambda self: self.outstanding is not None)
    @rule()
    def timeout(self) -> None:
        txn = self.outstanding
        self._forget_outstanding()
        self.apply(self.sub.on_timeout(self.now, txn))

    @precondition(lambda self: self.outstanding is not None)
    @rule()
    def transport_error(self) -> None:
        txn = self.outstanding
        self._forget_outstanding()
        self.apply(self.sub.on_transport_error(self.now, txn, "connection refused"))

    @rule()
    def internal_error(self) -> None:
        """What the engine does after catching an exception, UnexpectedEvent included."""
        self._forget_outstanding()
        self.apply(self.sub.on_internal_error(self.now, "boom"))

    @rule(
        state=st.sampled_from(SUBSTATES),
        reason=st.sampled_from(REASONS),
        expires=SECONDS,
        retry_after=SECONDS,
        in_order=st.booleans(),
    )
    def notify(
        self, state: str, reason: str | None, expires: int | None,
        retry_after: int | None, in_order: bool,
    ) -> None:
        code, actions = self.sub.on_notify(
            NotifyInfo(state, reason, expires, retry_after, in_order), self.now
        )
        assert code == (200 if self.dialog else 481)
        if not in_order:
            assert actions == []
        self.apply(actions)

    @rule(dt=st.floats(0.0, 5000.0))
    def time_passes(self, dt: float) -> None:
        target = self.now + dt
        if self.sub.deadline is not None:
            target = min(target, self.sub.deadline)
        self.now = max(self.now, target)

    @precondition(lambda self: self.sub.deadline is not None)
    @rule()
    def timer_fires(self) -> None:
        deadline = self.sub.deadline
        assert deadline is not None
        if self.now < deadline:
            assert self.sub.on_timer(self.now) == []  # early wake-ups do nothing
        self.now = max(self.now, deadline)
        self.apply(self.sub.on_timer(self.now))

    @rule()
    def unsubscribe(self) -> None:
        if self.sub.finished or self.unsubscribed:
            assert self.sub.unsubscribe(self.now) == []
            return
        self.unsubscribed = True
        self.over = False  # a consumer that unsubscribes waits for one final status
        self.apply(self.sub.unsubscribe(self.now))

    @rule()
    def admin_refresh(self) -> None:
        self.apply(self.sub.refresh(self.now))

    # ------------------------------------------------------------ invariants

    @invariant()
    def deadline_and_kind_go_together(self) -> None:
        assert (self.sub.deadline is None) == (self.sub.timer_kind is None)

    @invariant()
    def deadline_is_never_in_the_past(self) -> None:
        assert self.sub.deadline is None or self.sub.deadline >= self.now

    @invariant()
    def a_refresh_is_not_scheduled_after_the_expiry(self) -> None:
        """Strictly before it, except the 1 s floor, the expiry after a failed refresh,
        and a refresh at once when the expiry is already past (a dialog that a NOTIFY
        created, whose SUBSCRIBE then timed out after the asked expiry)."""
        expires_at = self.sub.expires_at
        if self.sub.timer_kind is TimerKind.REFRESH and expires_at is not None:
            assert self.sub.deadline is not None
            assert self.sub.deadline <= max(expires_at + MIN_RETRY_DELAY, self.now)

    @invariant()
    def finished_means_no_deadline_and_nothing_outstanding(self) -> None:
        if self.sub.finished:
            assert self.sub.deadline is None
            assert not self.sub.outstanding

    @invariant()
    def a_live_subscription_always_waits_for_something(self) -> None:
        if not self.sub.finished:
            assert self.sub.outstanding or self.sub.deadline is not None

    @invariant()
    def the_machine_and_the_engine_agree_on_the_outstanding_request(self) -> None:
        assert self.sub.outstanding == (self.outstanding is not None)

    @invariant()
    def at_most_one_final_status_after_unsubscribe(self) -> None:
        assert self.final_statuses <= 1
        if self.unsubscribed and self.sub.finished:
            assert self.final_statuses == 1

    @invariant()
    def the_final_message_means_finished(self) -> None:
        if self.over:
            assert self.sub.finished

    def teardown(self) -> None:
        """Unsubscribe and let everything answer: the end must come, with one status."""
        if not hasattr(self, "sub") or self.sub.finished:
            return
        self.unsubscribe()
        for _ in range(10):
            if self.sub.finished:
                break
            if self.outstanding is not None:
                self.response(200, 3600, None, None, ())
            else:
                self.timer_fires()
        assert self.sub.finished
        assert self.final_statuses == 1


SubscriptionMachine.TestCase.settings = settings(
    max_examples=400,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_event_sequences_keep_the_invariants = SubscriptionMachine.TestCase
