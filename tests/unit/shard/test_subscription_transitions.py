"""One test per row of the transition table in docs/subscription-state-machine.md.

Every test drives a Subscription on a fake clock (plain floats) into the state
of its row, applies the row's event and checks the actions and the next state.
Defaults: default_expiration 3600, resubscribe_delta 30, min_resubscribe_time
30, on_error_retry_time 120, wait_for_term_notify 30, T1 0.5 s.
"""

from __future__ import annotations

from typing import Any

from presence_b2b.presence.status import FailureKind, SubscriptionState
from presence_b2b.shard.subscription import (
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

ACTIVE = SubscriptionState.ACTIVE
PENDING = SubscriptionState.PENDING
TERMINATED = SubscriptionState.TERMINATED
# What every teardown path ends with when the dialog still existed.
ENDED_UNSUBSCRIBED = [DropDialog(), EmitStatus(TERMINATED, "unsubscribed")]


def make(t1: float = 0.5, **params: Any) -> Subscription:
    return Subscription(
        7, "sip:alice@example.com", "sip:bob@example.com", MachineParams(t1=t1, **params)
    )


def resp(code: int, **kw: Any) -> ResponseInfo:
    return ResponseInfo(code, **kw)


def notify(state: str = "active", **kw: Any) -> NotifyInfo:
    return NotifyInfo(state, **kw)


def unconfirmed(**params: Any) -> Subscription:
    sub = make(**params)
    assert sub.start(0.0) == [SendInitial(None, sub.expires, 1)]
    return sub


def confirmed(now: float = 0.0, **params: Any) -> Subscription:
    """2xx (Expires 3600) and a first NOTIFY at ``now``: refresh due at now + 3570."""
    sub = make(**params)
    sub.start(now)
    sub.on_response(resp(200, expires=3600), now)
    sub.on_notify(notify(), now)
    assert sub.state is State.CONFIRMED
    return sub


def resubscribing() -> Subscription:
    sub = confirmed()
    assert sub.on_timer(3570.0) == [SendInDialog(3600, 2)]
    assert sub.state is State.RESUBSCRIPTION
    return sub


def waiting() -> Subscription:
    sub = unconfirmed()
    sub.on_response(resp(500), 0.0)
    assert sub.state is State.WAITING
    return sub


def predestroyed() -> Subscription:
    sub = confirmed()
    assert sub.unsubscribe(10.0) == [SendInDialog(0, 2)]
    return sub


def waiting_for_termination() -> Subscription:
    sub = predestroyed()
    assert sub.on_response(resp(200, expires=0), 11.0) == []
    return sub


def destroyed() -> Subscription:
    sub = waiting()
    sub.unsubscribe(1.0)
    assert sub.finished
    return sub


def failure(kind: FailureKind, code: int, detail: str, retry_in: float | None) -> EmitFailure:
    return EmitFailure(kind, code, detail, retry_in)


# ----------------------------------------------------------------- start


def test_start_sends_the_initial_subscribe_at_once_to_the_record() -> None:
    sub = make()
    assert sub.start(0.0) == [SendInitial(None, 3600, 1)]
    assert sub.state is State.UNCONFIRMED
    assert sub.deadline is None
    assert sub.outstanding


def test_start_with_max_subscribe_delay_waits_a_random_delay_first() -> None:
    sub = make(max_subscribe_delay=10)
    assert sub.start(100.0) == []
    assert sub.state is State.WAITING
    assert sub.timer_kind is TimerKind.START_DELAY
    assert sub.deadline is not None
    assert 101.0 <= sub.deadline <= 110.0


def test_start_twice_is_a_no_op() -> None:
    sub = unconfirmed()
    assert sub.start(1.0) == []
    assert sub.txn == 1


# ----------------------------------------------------------------- UNCONFIRMED (0)


def test_unconfirmed_2xx_confirms_and_opens_the_no_notify_window() -> None:
    sub = unconfirmed()
    assert sub.on_response(resp(200, expires=3600), 2.0) == []
    assert sub.state is State.CONFIRMED
    assert (sub.timer_kind, sub.deadline) == (TimerKind.NO_NOTIFY, 2.0 + 64 * 0.5)
    assert not sub.outstanding


def test_unconfirmed_2xx_after_an_early_notify_arms_the_refresh_directly() -> None:
    sub = unconfirmed()
    assert sub.on_notify(notify("active"), 1.0) == (200, [EmitStatus(ACTIVE, "")])
    assert sub.on_response(resp(202, expires=3600), 2.0) == []
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 2.0 + 3570)


def test_unconfirmed_3xx_with_contact_starts_a_new_dialog_to_that_contact() -> None:
    sub = unconfirmed()
    actions = sub.on_response(resp(302, contacts=("sip:alice@other.example.com",)), 1.0)
    assert actions == [DropDialog(), SendInitial("sip:alice@other.example.com", 3600, 2)]
    assert sub.state is State.UNCONFIRMED


def test_unconfirmed_3xx_without_contact_is_an_error() -> None:
    sub = unconfirmed()
    actions = sub.on_response(resp(302, reason="Moved Temporarily"), 1.0)
    assert actions == [
        DropDialog(),
        failure(FailureKind.SIP_ERROR, 302, "302 Moved Temporarily", 120.0),
    ]
    assert (sub.state, sub.timer_kind, sub.deadline) == (State.WAITING, TimerKind.RETRY, 121.0)


def test_unconfirmed_423_resends_at_once_on_a_new_dialog_with_min_expires() -> None:
    sub = unconfirmed()
    actions = sub.on_response(resp(423, min_expires=7200), 1.0)
    assert actions == [DropDialog(), SendInitial(None, 7200, 2)]
    assert sub.state is State.UNCONFIRMED


def test_unconfirmed_423_without_a_larger_min_expires_is_an_error() -> None:
    sub = unconfirmed()
    actions = sub.on_response(resp(423, reason="Interval Too Brief", min_expires=60), 1.0)
    assert actions == [
        DropDialog(),
        failure(FailureKind.SIP_ERROR, 423, "423 Interval Too Brief", 120.0),
    ]
    assert sub.state is State.WAITING


def test_unconfirmed_error_reply_drops_the_dialog_reports_and_waits() -> None:
    sub = unconfirmed()
    actions = sub.on_response(resp(404, reason="Not Found"), 5.0)
    assert actions == [DropDialog(), failure(FailureKind.SIP_ERROR, 404, "404 Not Found", 120.0)]
    assert (sub.state, sub.timer_kind, sub.deadline) == (State.WAITING, TimerKind.RETRY, 125.0)


def test_unconfirmed_481_is_an_ordinary_error() -> None:
    sub = unconfirmed()
    actions = sub.on_response(resp(481), 5.0)
    assert actions == [DropDialog(), failure(FailureKind.SIP_ERROR, 481, "481", 120.0)]


def test_unconfirmed_timeout_reports_a_timeout_and_waits() -> None:
    sub = unconfirmed()
    actions = sub.on_timeout(32.0)
    assert actions == [
        DropDialog(),
        failure(FailureKind.TIMEOUT, 408, "no response to SUBSCRIBE", 120.0),
    ]
    assert (sub.state, sub.deadline) == (State.WAITING, 152.0)


def test_unconfirmed_notify_before_the_2xx_is_delivered() -> None:
    sub = unconfirmed()
    assert sub.on_notify(notify("pending", reason="x"), 1.0) == (200, [EmitStatus(PENDING, "x")])
    assert sub.state is State.UNCONFIRMED


def test_unconfirmed_terminated_notify_is_handled_by_its_reason() -> None:
    sub = unconfirmed()
    code, actions = sub.on_notify(notify("terminated", reason="rejected"), 1.0)
    assert code == 200
    assert actions == [
        EmitStatus(TERMINATED, "rejected"),
        DropDialog(),
        failure(FailureKind.TERMINATED, 0, "rejected", None),
    ]
    assert sub.finished


def test_unconfirmed_unsubscribe_waits_for_the_outstanding_response() -> None:
    sub = unconfirmed()
    assert sub.unsubscribe(1.0) == []
    assert sub.state is State.UNCONFIRMED_DESTROY
    assert sub.deadline is None


def test_unconfirmed_admin_refresh_is_a_no_op() -> None:
    sub = unconfirmed()
    assert sub.refresh(1.0) == []
    assert sub.state is State.UNCONFIRMED


# ----------------------------------------------------------------- UNCONFIRMED_DESTROY (1)


def test_unconfirmed_destroy_2xx_sends_the_unsubscribe_in_the_new_dialog() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    assert sub.on_response(resp(200, expires=3600), 2.0) == [SendInDialog(0, 2)]
    assert sub.state is State.PREDESTROYED


def test_unconfirmed_destroy_error_reply_ends_with_one_terminated_status() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    assert sub.on_response(resp(403), 2.0) == ENDED_UNSUBSCRIBED
    assert sub.finished
    assert sub.deadline is None


def test_unconfirmed_destroy_3xx_ends_without_following_the_redirect() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    actions = sub.on_response(resp(302, contacts=("sip:elsewhere@example.com",)), 2.0)
    assert actions == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_unconfirmed_destroy_423_ends_without_resending() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    actions = sub.on_response(resp(423, min_expires=7200), 2.0)
    assert actions == ENDED_UNSUBSCRIBED


def test_unconfirmed_destroy_timeout_ends_with_one_terminated_status() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    assert sub.on_timeout(32.0) == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_unconfirmed_destroy_non_terminating_notify_gets_200_and_no_status() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    assert sub.on_notify(notify("active"), 2.0) == (200, [])
    assert sub.state is State.UNCONFIRMED_DESTROY


def test_unconfirmed_destroy_terminating_notify_ends_it_with_its_reason() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    code, actions = sub.on_notify(notify("terminated", reason="rejected"), 2.0)
    assert (code, actions) == (200, [DropDialog(), EmitStatus(TERMINATED, "rejected")])
    assert sub.finished
    assert sub.on_response(resp(200, expires=3600), 3.0) == []  # the late 2xx is ignored


# ----------------------------------------------------------------- CONFIRMED (2)


def test_confirmed_refresh_timer_sends_an_in_dialog_refresh() -> None:
    sub = confirmed()
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 3570.0)
    assert sub.on_timer(3570.0) == [SendInDialog(3600, 2)]
    assert sub.state is State.RESUBSCRIPTION
    assert sub.deadline is None


def test_confirmed_no_notify_within_64_t1_counts_as_failed() -> None:
    sub = unconfirmed()
    sub.on_response(resp(200, expires=3600), 1.0)
    assert sub.on_timer(33.0) == [
        DropDialog(),
        failure(FailureKind.NO_NOTIFY, 0, "no NOTIFY within 32 s of the 2xx", 120.0),
    ]
    assert (sub.state, sub.timer_kind, sub.deadline) == (State.WAITING, TimerKind.RETRY, 153.0)


def test_confirmed_notify_delivers_its_status() -> None:
    sub = confirmed()
    assert sub.on_notify(notify("active", reason="x"), 5.0) == (200, [EmitStatus(ACTIVE, "x")])
    assert sub.on_notify(notify("pending"), 6.0) == (200, [EmitStatus(PENDING, "")])
    assert sub.state is State.CONFIRMED
    assert sub.notifies == 3


def test_confirmed_first_notify_closes_the_no_notify_window() -> None:
    sub = unconfirmed()
    sub.on_response(resp(200, expires=3600), 1.0)
    sub.on_notify(notify("active"), 2.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 3571.0)


def test_confirmed_terminated_notify_is_handled_by_its_reason() -> None:
    sub = confirmed()
    code, actions = sub.on_notify(notify("terminated", reason="deactivated"), 100.0)
    assert code == 200
    assert actions == [
        EmitStatus(TERMINATED, "deactivated"),
        DropDialog(),
        SendInitial(None, 3600, 2),
    ]
    assert sub.state is State.UNCONFIRMED


def test_confirmed_unsubscribe_sends_expires_0_in_dialog() -> None:
    sub = confirmed()
    assert sub.unsubscribe(10.0) == [SendInDialog(0, 2)]
    assert sub.state is State.PREDESTROYED
    assert sub.deadline is None


def test_confirmed_admin_refresh_sends_the_refresh_now() -> None:
    sub = confirmed()
    assert sub.refresh(10.0) == [SendInDialog(3600, 2)]
    assert sub.state is State.RESUBSCRIPTION


def test_confirmed_response_without_a_request_is_ignored_and_counted() -> None:
    sub = confirmed()
    assert sub.on_response(resp(200, expires=3600), 5.0) == []
    assert sub.on_response(resp(500), 5.0) == []
    assert sub.state is State.CONFIRMED
    assert sub.ignored == 2


# ----------------------------------------------------------------- WAITING (3)


def test_waiting_retry_timer_starts_a_new_dialog_to_the_record() -> None:
    sub = waiting()
    assert sub.on_timer(120.0) == [SendInitial(None, 3600, 2)]
    assert sub.state is State.UNCONFIRMED
    assert sub.deadline is None
    assert sub.retries == 1


def test_waiting_start_delay_timer_sends_the_first_subscribe() -> None:
    sub = make(max_subscribe_delay=10)
    sub.start(0.0)
    assert sub.deadline is not None
    assert sub.on_timer(sub.deadline) == [SendInitial(None, 3600, 1)]
    assert sub.state is State.UNCONFIRMED
    assert sub.retries == 0


def test_waiting_notify_gets_481() -> None:
    sub = waiting()
    assert sub.on_notify(notify("active"), 5.0) == (481, [])


def test_waiting_unsubscribe_ends_at_once_without_sending() -> None:
    sub = waiting()
    assert sub.unsubscribe(5.0) == [EmitStatus(TERMINATED, "unsubscribed")]
    assert sub.finished
    assert sub.deadline is None


def test_waiting_admin_refresh_retries_now() -> None:
    sub = waiting()
    assert sub.refresh(5.0) == [SendInitial(None, 3600, 2)]
    assert sub.state is State.UNCONFIRMED
    assert sub.deadline is None


def test_waiting_late_response_is_ignored_and_counted() -> None:
    sub = waiting()
    assert sub.on_response(resp(200, expires=3600), 5.0) == []
    assert sub.on_timeout(5.0) == []
    assert sub.state is State.WAITING
    assert sub.ignored == 2


# ----------------------------------------------------------------- RESUBSCRIPTION (4)


def test_resubscription_2xx_confirms_and_rearms_the_refresh() -> None:
    sub = resubscribing()
    assert sub.on_response(resp(200, expires=1800), 3571.0) == []
    assert (sub.state, sub.timer_kind, sub.deadline) == (
        State.CONFIRMED,
        TimerKind.REFRESH,
        3571.0 + 1770,
    )


def test_resubscription_3xx_with_contact_starts_a_new_dialog_to_that_contact() -> None:
    sub = resubscribing()
    actions = sub.on_response(resp(301, contacts=("sip:alice@new.example.com",)), 3571.0)
    assert actions == [DropDialog(), SendInitial("sip:alice@new.example.com", 3600, 3)]
    assert sub.state is State.UNCONFIRMED


def test_resubscription_423_resends_at_once_in_the_dialog_with_min_expires() -> None:
    sub = resubscribing()
    assert sub.on_response(resp(423, min_expires=7200), 3571.0) == [SendInDialog(7200, 3)]
    assert sub.state is State.RESUBSCRIPTION


def test_resubscription_3xx_without_contact_is_an_error() -> None:
    sub = resubscribing()
    actions = sub.on_response(resp(302), 3571.0)
    assert actions == [DropDialog(), failure(FailureKind.SIP_ERROR, 302, "302", 120.0)]
    assert sub.state is State.WAITING


def test_resubscription_423_without_a_larger_min_expires_is_an_error() -> None:
    sub = resubscribing()
    actions = sub.on_response(resp(423, min_expires=1800), 3571.0)
    assert actions == [DropDialog(), failure(FailureKind.SIP_ERROR, 423, "423", 120.0)]
    assert sub.state is State.WAITING


def test_resubscription_481_starts_a_new_dialog_at_once_without_a_failure() -> None:
    sub = resubscribing()
    assert sub.on_response(resp(481), 3571.0) == [DropDialog(), SendInitial(None, 3600, 3)]
    assert sub.state is State.UNCONFIRMED
    assert sub.errors == 0


def test_resubscription_error_reply_drops_the_dialog_reports_and_waits() -> None:
    sub = resubscribing()
    actions = sub.on_response(resp(503, reason="Service Unavailable", retry_after=60), 3571.0)
    assert actions == [
        DropDialog(),
        failure(FailureKind.SIP_ERROR, 503, "503 Service Unavailable", 60.0),
    ]
    assert (sub.state, sub.deadline) == (State.WAITING, 3631.0)


def test_resubscription_timeout_reports_a_timeout_and_waits() -> None:
    sub = resubscribing()
    actions = sub.on_timeout(3602.0)
    assert actions == [
        DropDialog(),
        failure(FailureKind.TIMEOUT, 408, "no response to SUBSCRIBE", 120.0),
    ]
    assert sub.state is State.WAITING


def test_resubscription_notify_delivers_its_status() -> None:
    sub = resubscribing()
    assert sub.on_notify(notify("active"), 3571.0) == (200, [EmitStatus(ACTIVE, "")])
    assert sub.state is State.RESUBSCRIPTION


def test_resubscription_terminated_notify_is_handled_by_its_reason() -> None:
    sub = resubscribing()
    code, actions = sub.on_notify(notify("terminated", reason="probation"), 3571.0)
    assert code == 200
    assert actions == [
        EmitStatus(TERMINATED, "probation"),
        DropDialog(),
        failure(FailureKind.TERMINATED, 0, "probation", 120.0),
    ]
    assert sub.state is State.WAITING
    assert sub.on_response(resp(200, expires=3600), 3572.0) == []  # the refresh's late 2xx


def test_resubscription_unsubscribe_waits_for_the_outstanding_response() -> None:
    sub = resubscribing()
    assert sub.unsubscribe(3571.0) == []
    assert sub.state is State.RESUBSCRIPTION_DESTROY


def test_resubscription_admin_refresh_is_a_no_op() -> None:
    sub = resubscribing()
    assert sub.refresh(3571.0) == []
    assert sub.state is State.RESUBSCRIPTION


def test_resubscription_still_waiting_for_the_first_notify_fails_at_the_window_end() -> None:
    sub = unconfirmed(min_resubscribe_time=1)
    sub.on_response(resp(200, expires=10), 0.0)  # refresh due at 1 s, window ends at 32 s
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 1.0)
    assert sub.on_timer(1.0) == [SendInDialog(3600, 2)]
    assert (sub.state, sub.timer_kind, sub.deadline) == (
        State.RESUBSCRIPTION,
        TimerKind.NO_NOTIFY,
        32.0,
    )
    actions = sub.on_timer(32.0)
    assert actions[0] == DropDialog()
    assert isinstance(actions[1], EmitFailure)
    assert actions[1].kind is FailureKind.NO_NOTIFY
    assert sub.state is State.WAITING


# ----------------------------------------------------------------- RESUBSCRIPTION_DESTROY (5)


def test_resubscription_destroy_2xx_sends_the_unsubscribe() -> None:
    sub = resubscribing()
    sub.unsubscribe(3571.0)
    assert sub.on_response(resp(200, expires=3600), 3572.0) == [SendInDialog(0, 3)]
    assert sub.state is State.PREDESTROYED


def test_resubscription_destroy_423_still_unsubscribes_the_live_dialog() -> None:
    sub = resubscribing()
    sub.unsubscribe(3571.0)
    assert sub.on_response(resp(423, min_expires=7200), 3572.0) == [SendInDialog(0, 3)]
    assert sub.state is State.PREDESTROYED


def test_resubscription_destroy_error_reply_ends_with_one_terminated_status() -> None:
    sub = resubscribing()
    sub.unsubscribe(3571.0)
    actions = sub.on_response(resp(481), 3572.0)
    assert actions == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_resubscription_destroy_3xx_ends_without_following_the_redirect() -> None:
    sub = resubscribing()
    sub.unsubscribe(3571.0)
    actions = sub.on_response(resp(302, contacts=("sip:elsewhere@example.com",)), 3572.0)
    assert actions == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_resubscription_destroy_timeout_ends_with_one_terminated_status() -> None:
    sub = resubscribing()
    sub.unsubscribe(3571.0)
    assert sub.on_timeout(3602.0) == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_resubscription_destroy_terminating_notify_ends_it_with_its_reason() -> None:
    sub = resubscribing()
    sub.unsubscribe(3571.0)
    assert sub.on_notify(notify("active"), 3571.5) == (200, [])
    code, actions = sub.on_notify(notify("terminated", reason="timeout"), 3572.0)
    assert (code, actions) == (200, [DropDialog(), EmitStatus(TERMINATED, "timeout")])
    assert sub.finished


# ----------------------------------------------------------------- WAITING_FOR_TERMINATION (6)


def test_waiting_for_termination_terminating_notify_ends_it_with_its_reason() -> None:
    sub = waiting_for_termination()
    code, actions = sub.on_notify(notify("terminated", reason="timeout"), 12.0)
    assert (code, actions) == (200, [DropDialog(), EmitStatus(TERMINATED, "timeout")])
    assert sub.finished
    assert sub.deadline is None


def test_waiting_for_termination_terminating_notify_without_reason_says_unsubscribed() -> None:
    sub = waiting_for_termination()
    assert sub.on_notify(notify("terminated"), 12.0) == (200, ENDED_UNSUBSCRIBED)


def test_waiting_for_termination_other_notify_gets_200_and_no_status() -> None:
    sub = waiting_for_termination()
    assert sub.on_notify(notify("active"), 12.0) == (200, [])
    assert sub.state is State.WAITING_FOR_TERMINATION


def test_waiting_for_termination_timer_ends_it_as_unsubscribed() -> None:
    sub = waiting_for_termination()
    assert (sub.timer_kind, sub.deadline) == (TimerKind.TERM_WAIT, 41.0)
    assert sub.on_timer(41.0) == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_waiting_for_termination_stray_response_is_ignored() -> None:
    sub = waiting_for_termination()
    assert sub.on_response(resp(200, expires=0), 12.0) == []
    assert sub.state is State.WAITING_FOR_TERMINATION


# ----------------------------------------------------------------- PREDESTROYED (7)


def test_predestroyed_2xx_waits_for_the_terminating_notify() -> None:
    sub = predestroyed()
    assert sub.on_response(resp(200, expires=0), 11.0) == []
    assert (sub.state, sub.timer_kind, sub.deadline) == (
        State.WAITING_FOR_TERMINATION,
        TimerKind.TERM_WAIT,
        41.0,
    )


def test_predestroyed_2xx_with_wait_for_term_notify_0_ends_at_once() -> None:
    sub = confirmed(wait_for_term_notify=0)
    sub.unsubscribe(10.0)
    assert sub.on_response(resp(200, expires=0), 11.0) == [
        DropDialog(),
        EmitStatus(TERMINATED, "unsubscribed"),
    ]
    assert sub.finished


def test_error_reply_to_unsubscribe_never_revives() -> None:
    sub = predestroyed()
    assert sub.on_response(resp(500), 11.0) == ENDED_UNSUBSCRIBED
    assert sub.finished
    assert sub.deadline is None


def test_predestroyed_481_ends_it() -> None:
    sub = predestroyed()
    assert sub.on_response(resp(481), 11.0) == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_predestroyed_3xx_ends_it_without_following_the_redirect() -> None:
    sub = predestroyed()
    actions = sub.on_response(resp(302, contacts=("sip:elsewhere@example.com",)), 11.0)
    assert actions == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_predestroyed_423_ends_it() -> None:
    sub = predestroyed()
    assert sub.on_response(resp(423, min_expires=7200), 11.0) == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_predestroyed_timeout_never_revives() -> None:
    sub = predestroyed()
    assert sub.on_timeout(42.0) == ENDED_UNSUBSCRIBED
    assert sub.finished


def test_predestroyed_terminating_notify_before_the_2xx_ends_it() -> None:
    sub = predestroyed()
    code, actions = sub.on_notify(notify("terminated", reason="timeout"), 10.5)
    assert (code, actions) == (200, [DropDialog(), EmitStatus(TERMINATED, "timeout")])
    assert sub.finished
    assert sub.on_response(resp(200, expires=0), 11.0) == []


def test_predestroyed_other_notify_gets_200_and_no_status() -> None:
    sub = predestroyed()
    assert sub.on_notify(notify("active"), 10.5) == (200, [])
    assert sub.state is State.PREDESTROYED


# ----------------------------------------------------------------- DESTROYED (8)


def test_destroyed_ignores_everything() -> None:
    sub = destroyed()
    assert sub.on_response(resp(200, expires=3600), 2.0) == []
    assert sub.on_timeout(2.0) == []
    assert sub.on_timer(1e9) == []
    assert sub.unsubscribe(2.0) == []
    assert sub.refresh(2.0) == []
    assert sub.start(2.0) == []
    assert sub.finished
    assert sub.deadline is None


def test_destroyed_notify_gets_481() -> None:
    sub = destroyed()
    assert sub.on_notify(notify("active"), 2.0) == (481, [])


# ----------------------------------------------------------------- any state


def test_unsubscribe_twice_is_a_no_op() -> None:
    sub = confirmed()
    assert sub.unsubscribe(10.0) == [SendInDialog(0, 2)]
    assert sub.unsubscribe(10.5) == []
    assert sub.state is State.PREDESTROYED


def test_unsubscribe_before_start_ends_at_once() -> None:
    sub = make()
    assert sub.unsubscribe(0.0) == [EmitStatus(TERMINATED, "unsubscribed")]
    assert sub.finished


def test_unsubscribe_during_the_start_delay_ends_at_once() -> None:
    sub = make(max_subscribe_delay=10)
    sub.start(0.0)
    assert sub.unsubscribe(1.0) == [EmitStatus(TERMINATED, "unsubscribed")]
    assert sub.finished


def test_out_of_order_terminating_notify_does_not_end_a_teardown() -> None:
    sub = waiting_for_termination()
    assert sub.on_notify(notify("terminated", in_order=False), 12.0) == (200, [])
    assert sub.state is State.WAITING_FOR_TERMINATION


def test_unconfirmed_destroy_unsubscribe_again_is_a_no_op() -> None:
    sub = unconfirmed()
    sub.unsubscribe(1.0)
    assert sub.unsubscribe(2.0) == []
    assert sub.state is State.UNCONFIRMED_DESTROY
