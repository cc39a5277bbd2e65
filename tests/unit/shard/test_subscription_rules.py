"""Timer formulas, retry rules, Subscription-State reasons and the engine contract.

One behaviour per test, all on a fake clock. Defaults: default_expiration
3600, resubscribe_delta 30, min_resubscribe_time 30, on_error_retry_time 120,
wait_for_term_notify 30, T1 0.5 s.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest
from presence_b2b.presence.status import FailureKind, SubscriptionState
from presence_b2b.shard.subscription import (
    MAX_REDIRECTS,
    DropDialog,
    EmitFailure,
    EmitStatus,
    MachineParams,
    NotifyInfo,
    ResponseInfo,
    SendInDialog,
    SendInitial,
    State,
    Subscription,
    TimerKind,
)

from presence_b2b.compiled import is_compiled

TERMINATED = SubscriptionState.TERMINATED


def make(t1: float = 0.5, rng: random.Random | None = None, **params: Any) -> Subscription:
    return Subscription(
        1, "sip:alice@example.com", "sip:bob@example.com", MachineParams(t1=t1, **params), rng=rng
    )


def resp(code: int, **kw: Any) -> ResponseInfo:
    return ResponseInfo(code, **kw)


def notify(state: str = "active", **kw: Any) -> NotifyInfo:
    return NotifyInfo(state, **kw)


def confirmed(now: float = 0.0, expires: int | None = 3600, **params: Any) -> Subscription:
    sub = make(**params)
    sub.start(now)
    sub.on_response(resp(200, expires=expires), now)
    sub.on_notify(notify(), now)
    return sub


def failures(actions: list[Any]) -> list[EmitFailure]:
    return [a for a in actions if isinstance(a, EmitFailure)]


def sends(actions: list[Any]) -> list[SendInitial | SendInDialog]:
    return [a for a in actions if isinstance(a, SendInitial | SendInDialog)]


# ----------------------------------------------------------------- asked expiry


def test_every_non_zero_subscribe_asks_default_expiration() -> None:
    sub = make(default_expiration=900)
    assert sends(sub.start(0.0)) == [SendInitial(None, 900, 1)]
    sub.on_response(resp(200, expires=900), 0.0)
    sub.on_notify(notify(), 0.0)
    assert sends(sub.on_timer(870.0)) == [SendInDialog(900, 2)]
    sub.on_response(resp(404), 871.0)
    assert sends(sub.on_timer(991.0)) == [SendInitial(None, 900, 3)]


def test_refresh_asks_default_expiration_even_after_a_shorter_grant() -> None:
    sub = confirmed(expires=600)
    assert sends(sub.on_timer(570.0)) == [SendInDialog(3600, 2)]


def test_min_expires_adopted_after_423_is_kept_for_the_rest_of_the_subscription() -> None:
    sub = make()
    sub.start(0.0)
    assert sends(sub.on_response(resp(423, min_expires=7200), 0.1)) == [SendInitial(None, 7200, 2)]
    sub.on_response(resp(200, expires=7200), 0.2)
    sub.on_notify(notify(), 0.3)
    assert sends(sub.on_timer(0.2 + 7170)) == [SendInDialog(7200, 3)]
    sub.on_response(resp(404), 7200.0)
    assert sends(sub.on_timer(7320.0)) == [SendInitial(None, 7200, 4)]
    assert sub.expires == 7200


def test_423_with_a_min_expires_not_above_the_asked_one_is_an_error() -> None:
    sub = make()
    sub.start(0.0)
    actions = sub.on_response(resp(423, min_expires=3600), 0.1)
    assert failures(actions) == [EmitFailure(FailureKind.SIP_ERROR, 423, "423", 120.0)]
    assert sub.expires == 3600


def test_423_without_min_expires_is_an_error() -> None:
    sub = make()
    sub.start(0.0)
    actions = sub.on_response(resp(423), 0.1)
    assert failures(actions) == [EmitFailure(FailureKind.SIP_ERROR, 423, "423", 120.0)]


def test_repeated_423_with_the_same_min_expires_becomes_an_error() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_response(resp(423, min_expires=7200), 0.1)
    actions = sub.on_response(resp(423, min_expires=7200), 0.2)
    assert sub.state is State.WAITING
    assert len(failures(actions)) == 1


def test_423_to_a_redirected_subscribe_resends_to_the_same_contact() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_response(resp(302, contacts=("sip:a@b.example.com",)), 0.1)
    actions = sub.on_response(resp(423, min_expires=7200), 0.2)
    assert actions == [DropDialog(), SendInitial("sip:a@b.example.com", 7200, 3)]


# ----------------------------------------------------------------- refresh timer


def test_refresh_is_scheduled_delta_before_the_granted_expiry() -> None:
    sub = confirmed(now=100.0, expires=3600)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 100.0 + 3600 - 30)


def test_refresh_uses_the_interval_the_server_granted() -> None:
    sub = confirmed(expires=600)
    assert sub.deadline == 570.0


def test_refresh_is_never_sooner_than_min_resubscribe_time_when_the_grant_allows() -> None:
    sub = confirmed(expires=60)
    assert sub.deadline == 30.0


def test_grant_too_short_for_delta_and_minimum_refreshes_at_half_of_it() -> None:
    sub = confirmed(expires=40)
    assert sub.deadline == 20.0


def test_refresh_keeps_resubscribe_delta_when_the_minimum_is_above_half_the_grant() -> None:
    sub = confirmed(expires=104, resubscribe_delta=100, min_resubscribe_time=5)
    assert sub.deadline == 5.0


def test_refresh_with_resubscribe_delta_0_still_comes_before_the_expiry() -> None:
    sub = confirmed(expires=600, resubscribe_delta=0)
    assert sub.deadline == 300.0


def test_grant_of_0_refreshes_after_one_second_not_in_a_loop() -> None:
    sub = confirmed(expires=0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 1.0)


def test_refresh_formula_uses_the_configured_delta_and_minimum() -> None:
    """A minimum above half the grant yields to the delta: 100 s before a 1000 s expiry."""
    sub = confirmed(expires=1000, resubscribe_delta=100, min_resubscribe_time=950)
    assert sub.deadline == 900.0
    sub = confirmed(expires=1000, resubscribe_delta=100, min_resubscribe_time=5)
    assert sub.deadline == 900.0


def test_missing_or_invalid_expires_refreshes_after_min_resubscribe_time() -> None:
    sub = confirmed(expires=None, min_resubscribe_time=45)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 45.0)


def test_missing_expires_with_min_resubscribe_time_above_the_asked_one_refreshes_at_half() -> None:
    sub = confirmed(expires=None, default_expiration=60, min_resubscribe_time=90)
    assert sub.deadline == 30.0


def test_refresh_2xx_rearms_from_the_time_of_the_2xx() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_notify(notify(), 3571.0)
    sub.on_response(resp(200, expires=3600), 3575.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 3575.0 + 3570)


def test_notify_with_shorter_expires_moves_the_refresh_earlier() -> None:
    sub = confirmed()
    sub.on_notify(notify("active", expires=100), 1000.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 1000.0 + 70)


def test_notify_with_longer_expires_never_moves_the_refresh_later() -> None:
    sub = confirmed()
    sub.on_notify(notify("active", expires=3600), 1000.0)
    assert sub.deadline == 3570.0


def test_notify_expires_too_short_for_the_minimum_refreshes_at_half_of_it() -> None:
    sub = confirmed()
    sub.on_notify(notify("active", expires=10), 1000.0)
    assert sub.deadline == 1005.0


def test_no_notify_window_is_64_t1_after_the_2xx() -> None:
    sub = make(t1=2.0)
    sub.start(0.0)
    sub.on_response(resp(200, expires=3600), 5.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.NO_NOTIFY, 5.0 + 128)


def test_timer_n_runs_after_a_refresh_2xx_too() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_response(resp(200, expires=3600), 3571.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.NO_NOTIFY, 3571.0 + 32)


def test_timer_n_after_a_refresh_is_not_armed_when_its_notify_came_first() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_notify(notify(), 3570.5)
    sub.on_response(resp(200, expires=3600), 3571.0)
    assert sub.timer_kind is TimerKind.REFRESH


def test_no_notify_after_a_refresh_fails_the_subscription() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_response(resp(200, expires=3600), 3571.0)
    actions = sub.on_timer(3603.0)
    assert failures(actions) == [
        EmitFailure(FailureKind.NO_NOTIFY, 0, "no NOTIFY within 32 s of the 2xx", 120.0)
    ]
    assert sub.state is State.WAITING


def test_no_notify_window_reopens_on_every_new_dialog() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_response(resp(481), 3571.0)  # new dialog at once
    sub.on_response(resp(200, expires=3600), 3572.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.NO_NOTIFY, 3572.0 + 32)


def test_no_notify_failure_retries_after_on_error_retry_time() -> None:
    sub = make(on_error_retry_time=300)
    sub.start(0.0)
    sub.on_response(resp(200, expires=3600), 0.0)
    actions = sub.on_timer(32.0)
    assert failures(actions)[0].retry_in == 300.0
    assert sub.deadline == 332.0


def test_start_delay_is_drawn_from_1_to_max_subscribe_delay() -> None:
    calls: list[tuple[int, int]] = []

    class Recorder(random.Random):
        def randint(self, a: int, b: int) -> int:
            calls.append((a, b))
            return b

    sub = make(max_subscribe_delay=17, rng=Recorder())
    sub.start(50.0)
    assert calls == [(1, 17)]
    assert sub.deadline == 67.0


def test_start_delay_is_spread_over_the_whole_range() -> None:
    rng = random.Random(1)
    delays = set()
    for _ in range(200):
        sub = make(max_subscribe_delay=5, rng=rng)
        sub.start(0.0)
        delays.add(sub.deadline)
    assert delays == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_termination_wait_is_wait_for_term_notify() -> None:
    sub = confirmed(wait_for_term_notify=7)
    sub.unsubscribe(100.0)
    sub.on_response(resp(200, expires=0), 100.5)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.TERM_WAIT, 107.5)


# ----------------------------------------------------------------- retry rules


def test_error_retry_waits_on_error_retry_time() -> None:
    sub = make(on_error_retry_time=45)
    sub.start(0.0)
    actions = sub.on_response(resp(500), 2.0)
    assert failures(actions)[0].retry_in == 45.0
    assert (sub.timer_kind, sub.deadline) == (TimerKind.RETRY, 47.0)


def test_error_retry_honours_retry_after() -> None:
    sub = make()
    sub.start(0.0)
    actions = sub.on_response(resp(503, retry_after=600), 2.0)
    assert failures(actions)[0].retry_in == 600.0
    assert sub.deadline == 602.0


def test_retry_is_never_sooner_than_one_second() -> None:
    sub = make()
    sub.start(0.0)
    actions = sub.on_response(resp(503, retry_after=0), 2.0)
    assert failures(actions)[0].retry_in == 1.0
    assert sub.deadline == 3.0


def test_error_retry_has_no_back_off() -> None:
    sub = make()
    sub.start(0.0)
    now = 0.0
    for _ in range(5):
        sub.on_response(resp(500), now)
        assert sub.deadline == now + 120
        now = sub.deadline
        assert sends(sub.on_timer(now)) == [SendInitial(None, 3600, sub.txn)]


def test_every_error_retry_uses_a_new_dialog() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_response(resp(404), 3571.0)
    assert sub.on_timer(3691.0) == [SendInitial(None, 3600, 3)]


def test_error_retry_after_a_redirect_goes_back_to_the_record() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_response(resp(302, contacts=("sip:a@b.example.com",)), 0.1)
    sub.on_response(resp(404), 0.2)
    assert sub.on_timer(120.2) == [SendInitial(None, 3600, 3)]


def test_redirects_are_followed_at_most_five_times_in_a_row() -> None:
    sub = make()
    sub.start(0.0)
    for i in range(MAX_REDIRECTS):
        contact = f"sip:a@hop{i}.example.com"
        assert sub.on_response(resp(302, contacts=(contact,)), 0.1) == [
            DropDialog(),
            SendInitial(contact, 3600, i + 2),
        ]
    actions = sub.on_response(resp(302, contacts=("sip:a@loop.example.com",)), 0.2)
    assert failures(actions) == [EmitFailure(FailureKind.SIP_ERROR, 302, "302", 120.0)]
    assert sub.state is State.WAITING


def test_redirect_count_restarts_after_a_2xx() -> None:
    sub = make(min_resubscribe_time=1)
    sub.start(0.0)
    for _ in range(MAX_REDIRECTS):
        sub.on_response(resp(302, contacts=("sip:a@b.example.com",)), 0.1)
    sub.on_response(resp(200, expires=3600), 0.2)
    sub.on_notify(notify(), 0.3)
    sub.on_timer(3570.2)
    actions = sub.on_response(resp(302, contacts=("sip:a@c.example.com",)), 3571.0)
    assert actions == [DropDialog(), SendInitial("sip:a@c.example.com", 3600, sub.txn)]


def test_failed_subscribe_after_481_recovery_falls_back_to_the_error_rule() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_response(resp(481), 3571.0)
    actions = sub.on_response(resp(481), 3572.0)
    assert actions == [DropDialog(), EmitFailure(FailureKind.SIP_ERROR, 481, "481", 120.0)]
    assert (sub.state, sub.deadline) == (State.WAITING, 3692.0)


def test_481_recovery_timeout_falls_back_to_the_error_rule() -> None:
    sub = confirmed()
    sub.on_timer(3570.0)
    sub.on_response(resp(481), 3571.0)
    actions = sub.on_timeout(3603.0)
    assert failures(actions)[0].kind is FailureKind.TIMEOUT
    assert sub.state is State.WAITING


# ----------------------------------------------------------------- Subscription-State reasons


@pytest.mark.parametrize("reason", ["deactivated", "timeout"])
def test_terminated_deactivated_or_timeout_resubscribes_at_once(reason: str) -> None:
    sub = confirmed()
    code, actions = sub.on_notify(notify("terminated", reason=reason), 500.0)
    assert code == 200
    assert actions == [EmitStatus(TERMINATED, reason), DropDialog(), SendInitial(None, 3600, 2)]
    assert sub.errors == 0


def test_second_immediate_resubscribe_within_on_error_retry_time_waits_instead() -> None:
    sub = confirmed()
    sub.on_notify(notify("terminated", reason="deactivated"), 500.0)
    sub.on_response(resp(200, expires=3600), 500.1)
    _, actions = sub.on_notify(notify("terminated", reason="deactivated"), 500.2)
    assert actions == [
        EmitStatus(TERMINATED, "deactivated"),
        DropDialog(),
        EmitFailure(FailureKind.TERMINATED, 0, "deactivated", 120.0),
    ]
    assert (sub.state, sub.timer_kind, sub.deadline) == (State.WAITING, TimerKind.RETRY, 620.2)


def test_immediate_resubscribe_is_allowed_again_after_on_error_retry_time() -> None:
    sub = confirmed()
    sub.on_notify(notify("terminated", reason="timeout"), 500.0)
    sub.on_response(resp(200, expires=3600), 500.1)
    sub.on_notify(notify(), 500.2)
    _, actions = sub.on_notify(notify("terminated", reason="timeout"), 620.0)
    assert sends(actions) == [SendInitial(None, 3600, 3)]


def test_terminated_deactivated_with_retry_after_waits_retry_after() -> None:
    sub = confirmed()
    _, actions = sub.on_notify(notify("terminated", reason="deactivated", retry_after=40), 500.0)
    assert failures(actions) == [EmitFailure(FailureKind.TERMINATED, 0, "deactivated", 40.0)]
    assert sub.deadline == 540.0


@pytest.mark.parametrize("reason", ["probation", "giveup"])
def test_terminated_probation_or_giveup_retries_after_on_error_retry_time(reason: str) -> None:
    sub = confirmed()
    _, actions = sub.on_notify(notify("terminated", reason=reason), 500.0)
    assert actions == [
        EmitStatus(TERMINATED, reason),
        DropDialog(),
        EmitFailure(FailureKind.TERMINATED, 0, reason, 120.0),
    ]
    assert (sub.state, sub.timer_kind, sub.deadline) == (State.WAITING, TimerKind.RETRY, 620.0)


def test_terminated_probation_honours_retry_after() -> None:
    sub = confirmed()
    _, actions = sub.on_notify(notify("terminated", reason="probation", retry_after=900), 500.0)
    assert failures(actions)[0].retry_in == 900.0
    assert sub.deadline == 1400.0


def test_terminated_retry_after_0_still_waits_one_second() -> None:
    sub = confirmed()
    sub.on_notify(notify("terminated", reason="giveup", retry_after=0), 500.0)
    assert sub.deadline == 501.0


@pytest.mark.parametrize("reason", ["rejected", "noresource", "invariant"])
def test_terminated_rejected_stops_and_tells_the_consumer(reason: str) -> None:
    sub = confirmed()
    code, actions = sub.on_notify(notify("terminated", reason=reason, retry_after=10), 500.0)
    assert code == 200
    assert actions == [
        EmitStatus(TERMINATED, reason),
        DropDialog(),
        EmitFailure(FailureKind.TERMINATED, 0, reason, None),
    ]
    assert sub.finished
    assert sub.deadline is None
    assert sub.unsubscribe(501.0) == []


def test_terminated_without_reason_retries_like_probation() -> None:
    sub = confirmed()
    _, actions = sub.on_notify(notify("terminated"), 500.0)
    assert actions == [
        EmitStatus(TERMINATED, ""),
        DropDialog(),
        EmitFailure(FailureKind.TERMINATED, 0, "", 120.0),
    ]
    assert sub.state is State.WAITING


def test_terminated_with_an_unknown_reason_retries_like_probation() -> None:
    sub = confirmed()
    _, actions = sub.on_notify(notify("terminated", reason="moved-on", retry_after=77), 500.0)
    assert failures(actions) == [EmitFailure(FailureKind.TERMINATED, 0, "moved-on", 77.0)]
    assert sub.deadline == 577.0


def test_terminated_reason_is_matched_without_case() -> None:
    sub = confirmed()
    _, actions = sub.on_notify(notify("terminated", reason="Rejected"), 500.0)
    assert sub.finished
    assert failures(actions)[0].retry_in is None


# ----------------------------------------------------------------- NOTIFY handling


def test_unknown_subscription_state_counts_as_pending() -> None:
    sub = confirmed()
    assert sub.on_notify(notify("waiting-for-godot"), 5.0) == (
        200,
        [EmitStatus(SubscriptionState.PENDING, "")],
    )


def test_out_of_order_notify_gets_200_and_no_status() -> None:
    sub = confirmed()
    assert sub.on_notify(notify("pending", in_order=False), 5.0) == (200, [])
    assert sub.ignored == 1


def test_out_of_order_terminated_notify_changes_nothing() -> None:
    sub = confirmed()
    assert sub.on_notify(notify("terminated", reason="rejected", in_order=False), 5.0) == (200, [])
    assert sub.state is State.CONFIRMED


def test_out_of_order_notify_does_not_move_the_refresh() -> None:
    sub = confirmed()
    sub.on_notify(notify("active", expires=60, in_order=False), 5.0)
    assert sub.deadline == 3570.0


# ----------------------------------------------------------------- engine contract


def test_response_for_another_transaction_is_ignored() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_response(resp(302, contacts=("sip:a@b.example.com",)), 0.1)  # txn 2 outstanding
    assert sub.on_response(resp(200, expires=3600, txn=1), 0.2) == []
    assert sub.state is State.UNCONFIRMED
    assert sub.outstanding
    assert sub.on_response(resp(200, expires=3600, txn=2), 0.3) == []
    assert sub.state is State.CONFIRMED


def test_duplicate_final_response_is_ignored_and_counted() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_response(resp(500), 0.1)
    deadline = sub.deadline
    assert sub.on_response(resp(500), 0.2) == []
    assert sub.deadline == deadline
    assert (sub.ignored, sub.errors) == (1, 1)


def test_provisional_response_is_ignored() -> None:
    sub = make()
    sub.start(0.0)
    assert sub.on_response(resp(180), 0.1) == []
    assert sub.outstanding
    assert sub.state is State.UNCONFIRMED


def test_timeout_for_a_stale_transaction_is_ignored() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_response(resp(423, min_expires=7200), 0.1)
    assert sub.on_timeout(32.0, txn=1) == []
    assert sub.outstanding


def test_timer_called_before_the_deadline_is_ignored() -> None:
    sub = confirmed()
    assert sub.on_timer(3569.9) == []
    assert (sub.state, sub.deadline) == (State.CONFIRMED, 3570.0)


def test_late_timer_still_fires() -> None:
    sub = confirmed()
    assert sends(sub.on_timer(4000.0)) == [SendInDialog(3600, 2)]


def test_timer_without_a_deadline_is_ignored() -> None:
    sub = make()
    sub.start(0.0)
    assert sub.on_timer(100.0) == []


def test_each_subscribe_gets_the_next_transaction_number() -> None:
    sub = confirmed()
    assert sub.txn == 1
    assert sub.on_timer(3570.0) == [SendInDialog(3600, 2)]
    assert sub.unsubscribe(3571.0) == []
    assert sub.on_response(resp(200, expires=3600, txn=2), 3572.0) == [SendInDialog(0, 3)]


# ----------------------------------------------------------------- unsubscribe guarantees


def _to_unconfirmed(sub: Subscription) -> None:
    pass


def _to_confirmed(sub: Subscription) -> None:
    sub.on_response(resp(200, expires=3600), 0.0)
    sub.on_notify(notify(), 0.0)


def _to_resubscription(sub: Subscription) -> None:
    _to_confirmed(sub)
    sub.on_timer(3570.0)


def _to_waiting(sub: Subscription) -> None:
    sub.on_response(resp(500), 0.0)


SETUPS = {
    "unconfirmed": _to_unconfirmed,
    "confirmed": _to_confirmed,
    "resubscription": _to_resubscription,
    "waiting": _to_waiting,
}
ENDINGS: dict[str, Any] = {
    "2xx-then-term-notify": [resp(200, expires=0), resp(200, expires=0), notify("terminated")],
    "2xx-then-timer": [resp(200, expires=0), resp(200, expires=0), "timer"],
    "error": [resp(500), resp(500)],
    "timeout": ["timeout", "timeout"],
    "term-notify-first": [notify("terminated", reason="timeout")],
}


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("ending", ENDINGS)
def test_every_unsubscribe_path_ends_with_exactly_one_terminated_status(
    setup: str, ending: str
) -> None:
    sub = make()
    sub.start(0.0)
    SETUPS[setup](sub)
    emitted: list[Any] = list(sub.unsubscribe(4000.0))
    now = 4000.0
    for event in ENDINGS[ending]:
        now += 1.0
        if event == "timer":
            now = max(now, sub.deadline or now)
            emitted += sub.on_timer(now)
        elif event == "timeout":
            emitted += sub.on_timeout(now)
        elif isinstance(event, NotifyInfo):
            emitted += sub.on_notify(event, now)[1]
        else:
            emitted += sub.on_response(event, now)
    statuses = [a for a in emitted if isinstance(a, EmitStatus)]
    assert len(statuses) == 1
    assert statuses[0].state is TERMINATED
    assert emitted[-1] == statuses[0]  # and nothing after it
    assert not failures(emitted)
    assert sub.finished
    assert sub.deadline is None


# ----------------------------------------------------------------- admin view and footprint


def test_snapshot_shows_state_timer_and_counters() -> None:
    sub = confirmed()
    sub.on_notify(notify("pending"), 1.0)
    snap = sub.snapshot()
    assert snap["state"] == "confirmed"
    assert snap["state_code"] == 2
    assert snap["timer"] == "refresh"
    assert snap["deadline"] == 3570.0
    assert snap["notifies"] == 2
    assert snap["last_code"] == 200
    assert snap["record"] == "sip:alice@example.com"


def test_snapshot_after_an_error_names_the_failure() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_response(resp(404), 1.0)
    snap = sub.snapshot()
    assert (snap["state"], snap["timer"], snap["errors"], snap["last_code"]) == (
        "waiting",
        "retry",
        1,
        404,
    )
    assert snap["last_failure"] == "sip-error"


def test_subscription_keeps_no_per_instance_dict() -> None:
    sub = confirmed()
    assert not hasattr(sub, "__dict__")
    # Compiled, an instance also holds a vtable pointer and a bitmap of set attributes.
    assert sys.getsizeof(sub) <= (272 if is_compiled() else 256)
