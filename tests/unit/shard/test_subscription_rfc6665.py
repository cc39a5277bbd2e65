"""What RFC 6665 asks of a subscriber, on a fake clock.

Failed refreshes (4.1.2.2), refresh timing before the expiry, Timer N
(4.1.2.2 and 4.1.2.4), NOTIFY before the 2xx (4.1.2.4), 3xx Contacts in turn
and transport failures. Defaults: default_expiration 3600, resubscribe_delta
30, min_resubscribe_time 30, on_error_retry_time 120, T1 0.5 s.
"""

from __future__ import annotations

from typing import Any

import pytest
from presence_b2b.presence.status import FailureKind, SubscriptionState
from presence_b2b.shard.subscription import (
    REFRESH_FAILURE_ENDS,
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


def make(**params: Any) -> Subscription:
    return Subscription(1, "sip:alice@example.com", "sip:bob@example.com", MachineParams(**params))


def confirmed(expires: int = 3600, **params: Any) -> Subscription:
    """Granted ``expires`` at 0 with a NOTIFY: refresh at expires - 30."""
    sub = make(**params)
    sub.start(0.0)
    sub.on_response(ResponseInfo(200, expires=expires), 0.0)
    sub.on_notify(NotifyInfo("active"), 0.0)
    return sub


def refreshing() -> Subscription:
    """The refresh of a 3600 s grant went out at 3570; the dialog expires at 3600."""
    sub = confirmed()
    assert sub.on_timer(3570.0) == [SendInDialog(3600, 2)]
    return sub


# ----------------------------------------------------------------- failed refresh (4.1.2.2)


@pytest.mark.parametrize("code", sorted(REFRESH_FAILURE_ENDS - {481}))
def test_refresh_answered_with_an_ending_code_ends_the_dialog(code: int) -> None:
    sub = refreshing()
    actions = sub.on_response(ResponseInfo(code), 3571.0)
    assert actions == [DropDialog(), EmitFailure(FailureKind.SIP_ERROR, code, str(code), 120.0)]
    assert sub.state is State.WAITING


def test_refresh_answered_481_starts_a_new_dialog_at_once() -> None:
    sub = refreshing()
    assert sub.on_response(ResponseInfo(481), 3571.0) == [DropDialog(), SendInitial(None, 3600, 3)]


@pytest.mark.parametrize("code", [403, 408, 486, 500, 503, 603])
def test_other_refresh_failures_keep_the_dialog_until_its_expiry(code: int) -> None:
    sub = refreshing()
    assert sub.on_response(ResponseInfo(code), 3572.0) == []
    assert sub.state is State.CONFIRMED


def test_the_consumer_is_not_told_of_a_refresh_failure_while_the_dialog_lives() -> None:
    sub = refreshing()
    assert sub.on_response(ResponseInfo(500), 3572.0) == []
    assert sub.errors == 0


def test_notifies_keep_coming_after_a_failed_refresh() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(500), 3572.0)
    assert sub.on_notify(NotifyInfo("active"), 3575.0) == (
        200, [EmitStatus(SubscriptionState.ACTIVE, "")]
    )


def test_failed_refresh_is_retried_at_half_the_remaining_life() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(500), 3572.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 3586.0)
    assert sub.on_timer(3586.0) == [SendInDialog(3600, 3)]


def test_failed_refresh_is_retried_after_on_error_retry_time_when_that_comes_first() -> None:
    sub = confirmed(expires=3600, resubscribe_delta=1000)
    sub.on_timer(2600.0)
    sub.on_response(ResponseInfo(500), 2600.0)
    assert sub.deadline == 2720.0


def test_failed_refresh_honours_a_retry_after_that_lands_before_the_expiry() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(503, retry_after=5), 3572.0)
    assert sub.deadline == 3577.0


def test_refresh_timeout_is_retried_in_the_dialog() -> None:
    sub = refreshing()
    assert sub.on_timeout(3580.0, 2) == []
    assert (sub.state, sub.deadline) == (State.CONFIRMED, 3590.0)


def test_successful_retry_of_a_refresh_restores_the_normal_cycle() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(500), 3572.0)
    sub.on_timer(3586.0)
    sub.on_notify(NotifyInfo("active"), 3586.5)
    assert sub.on_response(ResponseInfo(200, expires=3600, txn=3), 3587.0) == []
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 3587.0 + 3570)
    assert sub.snapshot()["refresh_failed"] is None


def test_expiry_without_a_successful_refresh_fails_and_starts_anew_later() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(503, "Service Unavailable", retry_after=60), 3572.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 3600.0)
    actions = sub.on_timer(3600.0)
    assert actions == [
        DropDialog(),
        EmitFailure(
            FailureKind.SIP_ERROR, 503, "503 Service Unavailable; the subscription expired", 120.0
        ),
    ]
    assert (sub.state, sub.deadline) == (State.WAITING, 3720.0)


def test_expiry_after_refresh_timeouts_is_reported_as_a_timeout() -> None:
    sub = refreshing()
    sub.on_timeout(3580.0, 2)  # retried at 3590
    sub.on_timer(3590.0)
    sub.on_timeout(3599.0, 3)  # half of 1 s is below the floor: nothing before 3600
    actions = sub.on_timer(3600.0)
    assert [type(a) for a in actions] == [DropDialog, EmitFailure]
    failure = actions[1]
    assert isinstance(failure, EmitFailure)
    assert (failure.kind, failure.code) == (FailureKind.TIMEOUT, 408)


def test_refresh_failure_answered_after_the_expiry_fails_at_once() -> None:
    sub = refreshing()
    actions = sub.on_response(ResponseInfo(500), 3601.0)
    assert [type(a) for a in actions] == [DropDialog, EmitFailure]
    assert sub.state is State.WAITING


def test_notify_shortening_the_dialog_brings_the_expiry_forward() -> None:
    sub = refreshing()
    sub.on_notify(NotifyInfo("active", expires=10), 3571.0)
    assert sub.expires_at == 3581.0
    sub.on_response(ResponseInfo(500), 3575.0)
    assert sub.deadline == 3578.0


# ----------------------------------------------------------------- refresh before the expiry


@pytest.mark.parametrize("grant", [0, 1, 2, 10, 31, 40, 59, 60, 61, 600, 3600])
@pytest.mark.parametrize("delta", [0, 30])
def test_a_refresh_is_never_scheduled_at_or_after_the_expiry(grant: int, delta: int) -> None:
    sub = confirmed(expires=grant, resubscribe_delta=delta)
    assert sub.timer_kind is TimerKind.REFRESH
    assert sub.deadline is not None
    if grant >= 2:
        assert sub.deadline < grant
    else:  # a 1 s floor keeps a server granting 0 from making a loop
        assert sub.deadline == 1.0


def test_notify_restating_the_expiry_moves_nothing() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(503, retry_after=25), 3572.0)  # retry at 3597
    sub.on_notify(NotifyInfo("active", expires=25), 3575.0)  # expires at 3600, as known
    assert (sub.deadline, sub.expires_at) == (3597.0, 3600.0)


def test_notify_expires_moves_the_refresh_before_the_new_expiry_too() -> None:
    sub = confirmed()
    sub.on_notify(NotifyInfo("active", expires=20), 100.0)
    assert sub.deadline == 110.0
    assert sub.expires_at == 120.0


# ----------------------------------------------------------------- Timer N


def test_timer_n_after_a_refresh_fails_the_subscription_without_a_notify() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(200, expires=3600), 3571.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.NO_NOTIFY, 3603.0)
    actions = sub.on_timer(3603.0)
    assert [type(a) for a in actions] == [DropDialog, EmitFailure]


def test_notify_after_a_refresh_stops_timer_n() -> None:
    sub = refreshing()
    sub.on_response(ResponseInfo(200, expires=3600), 3571.0)
    sub.on_notify(NotifyInfo("active"), 3572.0)
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 3571.0 + 3570)


# ----------------------------------------------------------------- NOTIFY before the 2xx (4.1.2.4)


def test_dialog_created_by_a_notify_survives_the_subscribe_timeout() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_notify(NotifyInfo("active", expires=600), 1.0)
    assert sub.on_timeout(32.0, 1) == []
    assert sub.state is State.CONFIRMED
    assert (sub.timer_kind, sub.deadline) == (TimerKind.REFRESH, 1.0 + 570)
    assert sub.expires_at == 601.0


def test_dialog_created_by_a_notify_refreshes_in_that_dialog() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_notify(NotifyInfo("active", expires=600), 1.0)
    sub.on_timeout(32.0, 1)
    assert sub.on_timer(571.0) == [SendInDialog(3600, 2)]


def test_dialog_created_by_a_notify_is_unsubscribed_when_the_subscribe_times_out() -> None:
    sub = make()
    sub.start(0.0)
    sub.on_notify(NotifyInfo("active", expires=600), 1.0)
    sub.unsubscribe(2.0)
    assert sub.on_timeout(32.0, 1) == [SendInDialog(0, 2)]


# ----------------------------------------------------------------- 3xx Contacts


TWO = ("sip:a@one.example", "sip:a@two.example")


def redirected() -> Subscription:
    sub = make()
    sub.start(0.0)
    assert sub.on_response(ResponseInfo(302, contacts=TWO), 0.5) == [
        DropDialog(), SendInitial(TWO[0], 3600, 2)
    ]
    return sub


def test_a_failed_redirected_attempt_tries_the_next_contact_before_reporting() -> None:
    sub = redirected()
    assert sub.on_response(ResponseInfo(503), 1.0) == [DropDialog(), SendInitial(TWO[1], 3600, 3)]


def test_a_timed_out_redirected_attempt_tries_the_next_contact() -> None:
    sub = redirected()
    assert sub.on_timeout(33.0, 2) == [DropDialog(), SendInitial(TWO[1], 3600, 3)]


def test_the_failure_is_reported_when_every_contact_failed() -> None:
    sub = redirected()
    sub.on_response(ResponseInfo(503), 1.0)
    actions = sub.on_response(ResponseInfo(404, "Not Found"), 2.0)
    assert actions == [
        DropDialog(), EmitFailure(FailureKind.SIP_ERROR, 404, "404 Not Found", 120.0)
    ]


def test_at_most_five_contacts_of_one_3xx_are_tried() -> None:
    sub = make()
    sub.start(0.0)
    contacts = tuple(f"sip:a@h{i}.example" for i in range(8))
    sub.on_response(ResponseInfo(302, contacts=contacts), 0.5)
    targets = []
    for t in range(10):
        actions = sub.on_response(ResponseInfo(500), 1.0 + t)
        targets += [a.target for a in actions if isinstance(a, SendInitial)]
    assert targets == list(contacts[1:5])


def test_305_is_a_sip_error_not_a_timeout() -> None:
    sub = make()
    sub.start(0.0)
    actions = sub.on_response(ResponseInfo(305, "Use Proxy", contacts=TWO), 0.5)
    assert actions == [
        DropDialog(), EmitFailure(FailureKind.SIP_ERROR, 305, "305 Use Proxy", 120.0)
    ]


def test_3xx_without_a_usable_contact_is_a_sip_error() -> None:
    sub = make()
    sub.start(0.0)
    actions = sub.on_response(ResponseInfo(302, "Moved Temporarily"), 0.5)
    assert actions == [
        DropDialog(), EmitFailure(FailureKind.SIP_ERROR, 302, "302 Moved Temporarily", 120.0)
    ]


# ----------------------------------------------------------------- transport errors


def test_transport_error_on_the_initial_subscribe_is_reported_as_transport() -> None:
    sub = make()
    sub.start(0.0)
    actions = sub.on_transport_error(0.1, 1, "connection refused")
    assert actions == [
        DropDialog(), EmitFailure(FailureKind.TRANSPORT, 0, "connection refused", 120.0)
    ]


def test_transport_error_on_a_refresh_keeps_the_dialog_until_its_expiry() -> None:
    sub = refreshing()
    assert sub.on_transport_error(3571.0, 2, "connection reset") == []
    assert (sub.state, sub.deadline) == (State.CONFIRMED, 3585.5)


def test_transport_error_for_a_stale_request_is_ignored() -> None:
    sub = refreshing()
    assert sub.on_transport_error(3571.0, 1, "connection reset") == []
    assert sub.state is State.RESUBSCRIPTION
    assert sub.ignored == 1
