"""Every row of the transition table, exercised in every state it lists.

Each case sets a Subscription up in a state on a fake clock, feeds one event
through the public API and checks that the row it names is the one taken, the
next state, the kinds of actions in order and, for a NOTIFY, the reply code.
A row added to shard/transitions.py without a case here fails
``test_every_row_is_exercised_in_every_state_it_lists``. What the actions carry
(targets, delays, reasons) is specified in test_subscription_rules.py and
test_subscription_rfc6665.py.

Defaults: default_expiration 3600, resubscribe_delta 30, min_resubscribe_time
30, on_error_retry_time 120, wait_for_term_notify 30, T1 0.5 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from presence_b2b.shard.subscription import (
    DropDialog,
    EmitFailure,
    EmitStatus,
    Event,
    MachineParams,
    NotifyInfo,
    ResponseInfo,
    SendInDialog,
    SendInitial,
    State,
    Subscription,
    TimerKind,
    UnexpectedEvent,
)
from presence_b2b.shard.transitions import ROWS

S = State
E = Event
DROP, STATUS, FAILURE = DropDialog, EmitStatus, EmitFailure
INITIAL, IN_DIALOG = SendInitial, SendInDialog
SAME = None  # the case's state does not change


def make(**params: Any) -> Subscription:
    return Subscription(7, "sip:alice@example.com", "sip:bob@example.com", MachineParams(**params))


def not_started() -> Subscription:
    return make()


def unconfirmed() -> Subscription:
    sub = make()
    sub.start(0.0)
    return sub


def redirected() -> Subscription:
    """UNCONFIRMED towards the first of two Contacts of a 302."""
    sub = unconfirmed()
    sub.on_response(ResponseInfo(302, contacts=("sip:a@one.example", "sip:a@two.example")), 0.5)
    return sub


def notified_early() -> Subscription:
    """UNCONFIRMED with a NOTIFY (expires 600) that came before the 2xx."""
    sub = unconfirmed()
    sub.on_notify(NotifyInfo("active", expires=600), 1.0)
    return sub


def confirmed() -> Subscription:
    sub = unconfirmed()
    sub.on_response(ResponseInfo(200, expires=3600), 0.0)
    sub.on_notify(NotifyInfo("active"), 0.0)
    return sub


def waiting() -> Subscription:
    sub = unconfirmed()
    sub.on_response(ResponseInfo(500), 0.0)
    return sub


def start_delayed() -> Subscription:
    sub = make(max_subscribe_delay=5)
    sub.start(0.0)
    return sub


def resubscription() -> Subscription:
    sub = confirmed()
    sub.on_timer(3570.0)
    return sub


def refresh_failed() -> Subscription:
    """CONFIRMED after a 503 to a refresh at 3575: retried at 3587.5, expiry 3600."""
    sub = resubscription()
    sub.on_response(ResponseInfo(503), 3575.0)
    return sub


def refresh_failed_until_expiry() -> Subscription:
    """CONFIRMED after a 503 with Retry-After 60 at 3575: nothing to do until 3600."""
    sub = resubscription()
    sub.on_response(ResponseInfo(503, retry_after=60), 3575.0)
    return sub


def no_notify_yet() -> Subscription:
    """CONFIRMED by a 2xx, no NOTIFY: Timer N ends at 32."""
    sub = unconfirmed()
    sub.on_response(ResponseInfo(200, expires=3600), 0.0)
    return sub


def resubscription_no_notify_yet() -> Subscription:
    """RESUBSCRIPTION of a 40 s grant (refresh at 20) while Timer N (to 32) runs."""
    sub = unconfirmed()
    sub.on_response(ResponseInfo(200, expires=40), 0.0)
    sub.on_timer(20.0)
    return sub


def unconfirmed_destroy() -> Subscription:
    sub = unconfirmed()
    sub.unsubscribe(0.5)
    return sub


def unconfirmed_destroy_notified() -> Subscription:
    sub = notified_early()
    sub.unsubscribe(1.5)
    return sub


def resubscription_destroy() -> Subscription:
    sub = resubscription()
    sub.unsubscribe(3571.0)
    return sub


def predestroyed() -> Subscription:
    sub = confirmed()
    sub.unsubscribe(10.0)
    return sub


def waiting_for_termination() -> Subscription:
    sub = predestroyed()
    sub.on_response(ResponseInfo(200, expires=0), 11.0)
    return sub


def destroyed() -> Subscription:
    sub = waiting()
    sub.unsubscribe(1.0)
    return sub


def late_resubscription() -> Subscription:
    """RESUBSCRIPTION whose dialog a NOTIFY said expires at 3571, before the answer."""
    sub = resubscription()
    sub.on_notify(n(expires=1), 3570.0)
    return sub


def predestroyed_without_term_wait() -> Subscription:
    sub = make(wait_for_term_notify=0)
    sub.start(0.0)
    sub.on_response(r(200, expires=3600), 0.0)
    sub.on_notify(n(), 0.0)
    sub.unsubscribe(1.0)
    return sub


# The usual way into each state; the generic cases below use these.
SETUPS: dict[State, Callable[[], Subscription]] = {
    S.UNCONFIRMED: unconfirmed,
    S.UNCONFIRMED_DESTROY: unconfirmed_destroy,
    S.CONFIRMED: confirmed,
    S.WAITING: waiting,
    S.RESUBSCRIPTION: resubscription,
    S.RESUBSCRIPTION_DESTROY: resubscription_destroy,
    S.WAITING_FOR_TERMINATION: waiting_for_termination,
    S.PREDESTROYED: predestroyed,
    S.DESTROYED: destroyed,
}


@dataclass(frozen=True)
class Case:
    row: str
    setup: Callable[[], Subscription]
    event: Event
    payload: Any
    next: State | None
    actions: tuple[type, ...]
    reply: int | None = None

    @property
    def id(self) -> str:
        return f"{self.row}:{self.setup.__name__}:{self.event.name.lower()}"


def r(code: int, **kw: Any) -> ResponseInfo:
    return ResponseInfo(code, **kw)


def n(state: str = "active", **kw: Any) -> NotifyInfo:
    return NotifyInfo(state, **kw)


def feed(sub: Subscription, case: Case) -> tuple[int | None, list[Any]]:
    """The event through the public API, at the time it would come."""
    e, p = case.event, case.payload
    now = when(sub)
    if e in (E.OK, E.REDIRECT, E.REJECT):
        return None, sub.on_response(replace(p, txn=sub.txn), now)
    if e is E.STALE:
        return None, sub.on_response(p, now)
    if e is E.TIMEOUT:
        return None, sub.on_timeout(now, sub.txn)
    if e is E.TRANSPORT:
        return None, sub.on_transport_error(now, sub.txn, "connection refused")
    if e in (E.NOTIFY, E.NOTIFY_TERMINATED, E.NOTIFY_LATE):
        return sub.on_notify(p, now)
    if e is E.SPURIOUS_TIMER:
        return None, sub.on_timer(now - 0.5)
    calls: dict[Event, Callable[[float], list[Any]]] = {
        E.START: sub.start,
        E.UNSUBSCRIBE: sub.unsubscribe,
        E.REFRESH: sub.refresh,
        E.INTERNAL: lambda t: sub.on_internal_error(t, "boom"),
    }
    return None, calls.get(e, sub.on_timer)(now)


def payload_for_lookup(sub: Subscription, case: Case) -> Any:
    if case.event is E.TIMEOUT:
        return ResponseInfo(408)
    if case.event is E.TRANSPORT:
        return ResponseInfo(0, "connection refused")
    return case.payload


def when(sub: Subscription) -> float:
    """The deadline if there is one, else just after the last step of every setup."""
    return sub.deadline if sub.deadline is not None else 3575.0


# ------------------------------------------------- rows with a setup of their own

CASES = [
    # start
    Case("start-delayed", lambda: make(max_subscribe_delay=5), E.START, "", S.WAITING, ()),
    Case("start", not_started, E.START, "", S.UNCONFIRMED, (INITIAL,)),
    # timers and the operator's refresh
    Case("retry", waiting, E.TIMER_RETRY, "", S.UNCONFIRMED, (INITIAL,)),
    Case("retry", start_delayed, E.TIMER_START_DELAY, "", S.UNCONFIRMED, (INITIAL,)),
    Case("retry", waiting, E.REFRESH, "", S.UNCONFIRMED, (INITIAL,)),
    Case("refresh-expired", refresh_failed_until_expiry, E.TIMER_REFRESH, "", S.WAITING,
         (DROP, FAILURE)),
    Case("refresh", confirmed, E.TIMER_REFRESH, "", S.RESUBSCRIPTION, (IN_DIALOG,)),
    Case("refresh", refresh_failed, E.TIMER_REFRESH, "", S.RESUBSCRIPTION, (IN_DIALOG,)),
    Case("refresh", confirmed, E.REFRESH, "", S.RESUBSCRIPTION, (IN_DIALOG,)),
    Case("no-notify", no_notify_yet, E.TIMER_NO_NOTIFY, "", S.WAITING, (DROP, FAILURE)),
    Case("no-notify", resubscription_no_notify_yet, E.TIMER_NO_NOTIFY, "", S.WAITING,
         (DROP, FAILURE)),
    Case("term-wait", waiting_for_termination, E.TIMER_TERM_WAIT, "", S.DESTROYED,
         (DROP, STATUS)),
    # unsubscribe
    Case("unsubscribe-unconfirmed", unconfirmed, E.UNSUBSCRIBE, "", S.UNCONFIRMED_DESTROY, ()),
    Case("unsubscribe-no-dialog", not_started, E.UNSUBSCRIBE, "", S.DESTROYED, (STATUS,)),
    Case("unsubscribe-no-dialog", waiting, E.UNSUBSCRIBE, "", S.DESTROYED, (STATUS,)),
    Case("unsubscribe-confirmed", confirmed, E.UNSUBSCRIBE, "", S.PREDESTROYED, (IN_DIALOG,)),
    Case("unsubscribe-resubscription", resubscription, E.UNSUBSCRIBE, "",
         S.RESUBSCRIPTION_DESTROY, ()),
    Case("internal-destroyed", destroyed, E.INTERNAL, "", SAME, ()),
    # answers to the initial SUBSCRIBE
    Case("initial-2xx", unconfirmed, E.OK, r(200, expires=3600), S.CONFIRMED, ()),
    Case("initial-3xx", unconfirmed, E.REDIRECT, r(302, contacts=("sip:a@b.example",)),
         S.UNCONFIRMED, (DROP, INITIAL)),
    Case("initial-423", unconfirmed, E.REJECT, r(423, min_expires=7200), S.UNCONFIRMED,
         (DROP, INITIAL)),
    Case("initial-lost-after-notify", notified_early, E.TIMEOUT, None, S.CONFIRMED, ()),
    Case("initial-lost-after-notify", notified_early, E.TRANSPORT, None, S.CONFIRMED, ()),
    Case("initial-next-contact", redirected, E.REDIRECT, r(305), S.UNCONFIRMED, (DROP, INITIAL)),
    Case("initial-next-contact", redirected, E.REJECT, r(503), S.UNCONFIRMED, (DROP, INITIAL)),
    Case("initial-next-contact", redirected, E.TIMEOUT, None, S.UNCONFIRMED, (DROP, INITIAL)),
    Case("initial-next-contact", redirected, E.TRANSPORT, None, S.UNCONFIRMED, (DROP, INITIAL)),
    Case("initial-failed", unconfirmed, E.REDIRECT, r(302), S.WAITING, (DROP, FAILURE)),
    Case("initial-failed", unconfirmed, E.REJECT, r(481), S.WAITING, (DROP, FAILURE)),
    Case("initial-failed", unconfirmed, E.TIMEOUT, None, S.WAITING, (DROP, FAILURE)),
    Case("initial-failed", unconfirmed, E.TRANSPORT, None, S.WAITING, (DROP, FAILURE)),
    # answers to a refresh
    Case("refresh-2xx", resubscription, E.OK, r(200, expires=3600), S.CONFIRMED, ()),
    Case("refresh-3xx", resubscription, E.REDIRECT, r(302, contacts=("sip:a@b.example",)),
         S.UNCONFIRMED, (DROP, INITIAL)),
    Case("refresh-423", resubscription, E.REJECT, r(423, min_expires=7200), S.RESUBSCRIPTION,
         (IN_DIALOG,)),
    Case("refresh-481", resubscription, E.REJECT, r(481), S.UNCONFIRMED, (DROP, INITIAL)),
    Case("refresh-failed-dialog-lives", resubscription, E.REDIRECT, r(305), S.CONFIRMED, ()),
    Case("refresh-failed-dialog-lives", resubscription, E.REJECT, r(503), S.CONFIRMED, ()),
    Case("refresh-failed-dialog-lives", resubscription, E.TIMEOUT, None, S.CONFIRMED, ()),
    Case("refresh-failed-dialog-lives", resubscription, E.TRANSPORT, None, S.CONFIRMED, ()),
    Case("refresh-failed", resubscription, E.REJECT, r(404), S.WAITING, (DROP, FAILURE)),
    Case("refresh-failed", late_resubscription, E.REDIRECT, r(302), S.WAITING,
         (DROP, FAILURE)),
    Case("refresh-failed", late_resubscription, E.TIMEOUT, None, S.WAITING,
         (DROP, FAILURE)),
    Case("refresh-failed", late_resubscription, E.TRANSPORT, None, S.WAITING,
         (DROP, FAILURE)),
    # answers during teardown
    Case("unconfirmed-destroy-2xx", unconfirmed_destroy, E.OK, r(200), S.PREDESTROYED,
         (IN_DIALOG,)),
    Case("unconfirmed-destroy-lost-after-notify", unconfirmed_destroy_notified, E.TIMEOUT, None,
         S.PREDESTROYED, (IN_DIALOG,)),
    Case("unconfirmed-destroy-lost-after-notify", unconfirmed_destroy_notified, E.TRANSPORT,
         None, S.PREDESTROYED, (IN_DIALOG,)),
    Case("resubscription-destroy-2xx", resubscription_destroy, E.OK, r(200), S.PREDESTROYED,
         (IN_DIALOG,)),
    Case("resubscription-destroy-dialog-lives", resubscription_destroy, E.REJECT, r(423),
         S.PREDESTROYED, (IN_DIALOG,)),
    Case("resubscription-destroy-dialog-lives", resubscription_destroy, E.TIMEOUT, None,
         S.PREDESTROYED, (IN_DIALOG,)),
    Case("predestroyed-2xx", predestroyed, E.OK, r(200), S.WAITING_FOR_TERMINATION, ()),
    Case("teardown-answered", predestroyed_without_term_wait, E.OK, r(200), S.DESTROYED,
         (DROP, STATUS)),
    Case("teardown-answered", unconfirmed_destroy, E.REJECT, r(500), S.DESTROYED,
         (DROP, STATUS)),
    Case("teardown-answered", unconfirmed_destroy, E.REDIRECT, r(302, contacts=("sip:x@y",)),
         S.DESTROYED, (DROP, STATUS)),
    Case("teardown-answered", resubscription_destroy, E.REJECT, r(481), S.DESTROYED,
         (DROP, STATUS)),
    Case("teardown-answered", predestroyed, E.TIMEOUT, None, S.DESTROYED, (DROP, STATUS)),
    # NOTIFYs
    Case("notify-unconfirmed", unconfirmed, E.NOTIFY, n(expires=600), SAME, (STATUS,), 200),
]


# ------------------------------------------------- rows that read the same in each state

# row -> (event, payload, next state or SAME, actions, reply); one case per state of the row.
GENERIC: dict[str, tuple[Event, Any, State | None, tuple[type, ...], int | None]] = {
    "start-again": (E.START, "", SAME, (), None),
    "refresh-busy": (E.REFRESH, "", SAME, (), None),
    "spurious-timer": (E.SPURIOUS_TIMER, "", SAME, (), None),
    "unsubscribe-again": (E.UNSUBSCRIBE, "", SAME, (), None),
    "internal-live": (E.INTERNAL, "", S.WAITING, (DROP, FAILURE), None),
    "internal-teardown": (E.INTERNAL, "", S.DESTROYED, (DROP, STATUS), None),
    "stale-answer": (E.STALE, r(200, txn=999), SAME, (), None),
    "notify-no-dialog": (E.NOTIFY, n(), SAME, (), 481),
    "notify-late": (E.NOTIFY_LATE, n("terminated", in_order=False), SAME, (), 200),
    "notify": (E.NOTIFY, n(expires=100), SAME, (STATUS,), 200),
    "terminated-final": (E.NOTIFY_TERMINATED, n("terminated", reason="rejected"), S.DESTROYED,
                         (STATUS, DROP, FAILURE), 200),
    "terminated-resubscribe": (E.NOTIFY_TERMINATED, n("terminated", reason="deactivated"),
                               S.UNCONFIRMED, (STATUS, DROP, INITIAL), 200),
    "terminated-retry": (E.NOTIFY_TERMINATED, n("terminated", reason="giveup"), S.WAITING,
                         (STATUS, DROP, FAILURE), 200),
    "teardown-notify": (E.NOTIFY, n(), SAME, (), 200),
    "teardown-terminated": (E.NOTIFY_TERMINATED, n("terminated"), S.DESTROYED, (DROP, STATUS),
                            200),
}
CASES += [
    Case(row.name, SETUPS[state], *GENERIC[row.name])
    for row in ROWS
    if row.name in GENERIC
    for state in row.states
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_row(case: Case) -> None:
    sub = case.setup()
    before = sub.state
    row = sub.row_for(case.event, payload_for_lookup(sub, case), when(sub))
    assert row is not None and row.name == case.row
    reply, actions = feed(sub, case)
    assert sub.state is (before if case.next is None else case.next)
    assert tuple(type(a) for a in actions) == case.actions
    assert reply == case.reply


def test_every_row_is_exercised_in_every_state_it_lists() -> None:
    exercised = {(c.row, c.setup().state) for c in CASES}
    missing = [
        (row.name, state.name) for row in ROWS for state in row.states
        if (row.name, state) not in exercised
    ]
    assert missing == []


def test_every_row_name_is_unique() -> None:
    names = [row.name for row in ROWS]
    assert len(names) == len(set(names))


# ----------------------------------------------------------------- pairs without a row

NO_REQUEST_OUTSTANDING = (S.CONFIRMED, S.WAITING, S.WAITING_FOR_TERMINATION, S.DESTROYED)
ARMED_IN = {
    E.TIMER_START_DELAY: {S.WAITING},
    E.TIMER_RETRY: {S.WAITING},
    E.TIMER_REFRESH: {S.CONFIRMED},
    E.TIMER_NO_NOTIFY: {S.CONFIRMED, S.RESUBSCRIPTION},
    E.TIMER_TERM_WAIT: {S.WAITING_FOR_TERMINATION},
}


def test_only_impossible_pairs_have_no_row() -> None:
    """An answer needs an outstanding SUBSCRIBE (else it is STALE), and a timer
    fires only in the states that arm its kind; every other pair has rows."""
    expected = {
        (s, e) for s in NO_REQUEST_OUTSTANDING
        for e in (E.OK, E.REDIRECT, E.REJECT, E.TIMEOUT, E.TRANSPORT)
    } | {(s, e) for e, armed in ARMED_IN.items() for s in State if s not in armed}
    without = {(s, e) for s in State for e in Event if not any(
        s in row.states and e in row.events for row in ROWS
    )}
    assert without == expected


def test_the_last_row_of_every_pair_has_no_guard() -> None:
    """So an event that has rows in a state is always handled there."""
    guarded_last = []
    for s in State:
        for e in Event:
            rows = [row for row in ROWS if s in row.states and e in row.events]
            if rows and rows[-1].guard is not None:
                guarded_last.append((s.name, e.name, rows[-1].name))
    assert guarded_last == []


def test_an_event_without_a_row_raises_unexpected_event() -> None:
    sub = confirmed()
    sub.timer_kind = TimerKind.TERM_WAIT  # a bug elsewhere armed the wrong timer
    with pytest.raises(UnexpectedEvent) as raised:
        sub.on_timer(3570.0)
    assert (raised.value.state, raised.value.event) == (S.CONFIRMED, "timer_term_wait")
