"""The subscription machine's transition table: the rows are the code.

A row says: in these states, on these events, if its guard holds, run these
actions and go to this state. :class:`~.subscription.Subscription` looks up the
rows of (state, event) in a tuple indexed by both and takes the first whose
guard holds; a pair without rows, or rows whose guards all fail, raises
:class:`~.subscription_io.UnexpectedEvent`. ``scripts/gen-state-machine-doc``
prints this table into docs/subscription-state-machine.md, so the doc and the
code cannot drift apart.

Guards and actions are small functions of (subscription, event payload, now);
actions append what the engine must do to ``out``. They reach into the
subscription's private slots on purpose: this module is the machine's
behaviour, :mod:`.subscription` only its data and dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..presence.status import FailureKind, SubscriptionState
from .subscription_io import (
    FINAL_REASONS,
    MAX_REDIRECT_CONTACTS,
    MAX_REDIRECTS,
    NO_NOTIFY_T1_MULTIPLE,
    REFRESH_FAILURE_ENDS,
    RESUBSCRIBE_AT_ONCE_REASONS,
    Action,
    DropDialog,
    EmitFailure,
    EmitStatus,
    Event,
    NotifyInfo,
    ResponseInfo,
    State,
    TimerKind,
)

if TYPE_CHECKING:
    from .subscription import Subscription

P = TypeVar("P")
Guard = Callable[["Subscription", P, float], bool]
Act = Callable[["Subscription", P, float, list[Action]], None]

_DROP = DropDialog()
_UNSUBSCRIBED = "unsubscribed"
# The payload of a timeout: RFC 3261 8.1.3.1 treats it as a 408 response; the
# identity tells it from a real 408 when the failure is reported.
TIMED_OUT = ResponseInfo(408, "no response to SUBSCRIBE")

# What the doc prints for a guard or an action; filled by the decorators below.
LABELS: dict[object, str] = {}

F = TypeVar("F", bound=Callable[..., Any])


def label(text: str) -> Callable[[F], F]:
    """Name a guard or an action for the generated table."""

    def register(fn: F) -> F:
        LABELS[fn] = text
        return fn

    return register


class Row(Generic[P]):
    """One line of the table; ``next`` None keeps the state; ``reply`` is the
    answer to a NOTIFY (NOTIFY rows only). Rows are built once, at import, and
    never changed. A plain class: mypyc cannot compile a generic frozen
    dataclass (its class object refuses the dataclass's ``__dict__`` write)."""

    __slots__ = ("actions", "events", "guard", "name", "next", "reply", "states")

    def __init__(  # noqa: PLR0917 - a row is written as a line of the table, by position
        self,
        name: str,
        states: tuple[State, ...],
        events: tuple[Event, ...],
        guard: Guard[P] | None,
        actions: tuple[Act[P], ...],
        next: State | None,
        reply: int = 200,
    ) -> None:
        self.name = name
        self.states = states
        self.events = events
        self.guard = guard
        self.actions = actions
        self.next = next
        self.reply = reply

    def __repr__(self) -> str:
        return f"Row({self.name!r})"


Table = tuple[tuple[tuple[Row[P], ...], ...], ...]

S = State
E = Event
ALL: tuple[State, ...] = tuple(State)
LIVE: tuple[State, ...] = (S.UNCONFIRMED, S.CONFIRMED, S.RESUBSCRIPTION)
TEARDOWN: tuple[State, ...] = (
    S.UNCONFIRMED_DESTROY, S.RESUBSCRIPTION_DESTROY, S.WAITING_FOR_TERMINATION, S.PREDESTROYED
)
ANSWERS: tuple[Event, ...] = (E.OK, E.REDIRECT, E.REJECT, E.TIMEOUT, E.TRANSPORT)
FAILED: tuple[Event, ...] = (E.REDIRECT, E.REJECT, E.TIMEOUT, E.TRANSPORT)
NOTIFIES: tuple[Event, ...] = (E.NOTIFY, E.NOTIFY_TERMINATED, E.NOTIFY_LATE)


def failure_of(r: ResponseInfo) -> tuple[FailureKind, int, str]:
    """The failure a consumer is told of for an answer that is not a 2xx."""
    if r is TIMED_OUT:
        return FailureKind.TIMEOUT, 408, r.reason
    if r.code == 0:  # on_transport_error: no response code exists
        return r.failure_kind or FailureKind.TRANSPORT, 0, r.reason
    if r.auth_failure:
        return FailureKind.AUTH, r.code, r.auth_failure
    return FailureKind.SIP_ERROR, r.code, f"{r.code} {r.reason}".rstrip()


# --------------------------------------------------------------------------- guards


@label("not started yet, `max_subscribe_delay` > 0")
def delayed_start(sub: Subscription, _: str, now: float) -> bool:
    return sub._txn == 0 and sub.params.max_subscribe_delay > 0


@label("not started yet")
def not_started(sub: Subscription, _: str, now: float) -> bool:
    return sub._txn == 0


@label("a SUBSCRIBE is outstanding")
def outstanding(sub: Subscription, _: str, now: float) -> bool:
    return sub._outstanding


@label("a SIP Contact, not 305, < 5 redirects in a row")
def redirect_usable(sub: Subscription, r: ResponseInfo, now: float) -> bool:
    return r.code != 305 and bool(r.contacts) and sub._redirects < MAX_REDIRECTS


@label("423 with Min-Expires > asked")
def larger_min_expires(sub: Subscription, r: ResponseInfo, now: float) -> bool:
    return r.code == 423 and r.min_expires is not None and r.min_expires > sub._expires


@label("481")
def lost_dialog(sub: Subscription, r: ResponseInfo, now: float) -> bool:
    return r.code == 481


@label("another Contact of the last 3xx is left")
def contact_left(sub: Subscription, r: ResponseInfo, now: float) -> bool:
    return bool(sub._contacts)


@label("a NOTIFY created the dialog")
def dialog_from_notify(sub: Subscription, r: ResponseInfo, now: float) -> bool:
    return sub._got_notify


@label("not an ending code (RFC 6665 4.1.2.2), before the expiry")
def dialog_outlives_failure(sub: Subscription, r: ResponseInfo, now: float) -> bool:
    return r.code not in REFRESH_FAILURE_ENDS and now < sub._expires_at


@label("`wait_for_term_notify` > 0")
def term_wait_configured(sub: Subscription, r: ResponseInfo, now: float) -> bool:
    return sub.params.wait_for_term_notify > 0


@label("reason rejected, noresource or invariant")
def final_reason(sub: Subscription, n: NotifyInfo, now: float) -> bool:
    return (n.reason or "").lower() in FINAL_REASONS


@label("reason deactivated or timeout, no retry-after, none such within `on_error_retry_time`")
def resubscribe_now(sub: Subscription, n: NotifyInfo, now: float) -> bool:
    if (n.reason or "").lower() not in RESUBSCRIBE_AT_ONCE_REASONS or n.retry_after is not None:
        return False
    last = sub._last_resubscribe
    return last is None or now - last >= sub.params.on_error_retry_time


@label("a refresh failed and the expiry has come")
def expired_after_failed_refresh(sub: Subscription, _: str, now: float) -> bool:
    return sub._refresh_failure is not None and now >= sub._expires_at


# --------------------------------------------------------------------------- actions


def _new_dialog(sub: Subscription, target: str | None, out: list[Action]) -> None:
    """Give up the current dialog (if any) and start another: to ``target`` or the record."""
    out.append(_DROP)
    out.append(sub._send_initial(target))



@label("count it as ignored")
def count_ignored(sub: Subscription, _: object, now: float, out: list[Action]) -> None:
    sub.ignored += 1


@label("arm START_DELAY: 1..`max_subscribe_delay` s")
def delay_start(sub: Subscription, _: str, now: float, out: list[Action]) -> None:
    sub._arm(TimerKind.START_DELAY, now + sub._rng().randint(1, sub.params.max_subscribe_delay))


@label("`SendInitial(record)`")
def send_initial_to_record(sub: Subscription, _: object, now: float, out: list[Action]) -> None:
    out.append(sub._send_initial(None))


@label("`SendInDialog(asked expiry)`; Timer N runs until a NOTIFY")
def send_refresh(sub: Subscription, _: str, now: float, out: list[Action]) -> None:
    out.append(sub._send_in_dialog(sub._expires))
    sub._got_notify = False
    sub._rearm()  # keeps a still-open NOTIFY window armed


@label("`SendInDialog(0)`")
def unsubscribe_in_dialog(sub: Subscription, _: object, now: float, out: list[Action]) -> None:
    sub._disarm()
    out.append(sub._send_in_dialog(0))


@label("nothing sent; the outstanding answer decides")
def await_answer(sub: Subscription, _: str, now: float, out: list[Action]) -> None:
    sub._disarm()


@label("`EmitStatus(TERMINATED, unsubscribed)`")
def end_without_dialog(sub: Subscription, _: str, now: float, out: list[Action]) -> None:
    sub._finish(out, _UNSUBSCRIBED, dialog=False)


@label('ends("unsubscribed")')
def end_unsubscribed(sub: Subscription, _: object, now: float, out: list[Action]) -> None:
    sub._finish(out, _UNSUBSCRIBED, dialog=True)


@label("arm REFRESH (and NO_NOTIFY unless a NOTIFY came) from the 2xx")
def confirm(sub: Subscription, r: ResponseInfo, now: float, out: list[Action]) -> None:
    sub._redirects = 0
    sub._contacts = ()
    sub._refresh_failure = None
    sub._grant(now, r.expires)
    if sub._no_notify_by is None and not sub._got_notify:
        sub._no_notify_by = now + NO_NOTIFY_T1_MULTIPLE * sub.t1
    sub._rearm()


@label("arm REFRESH from the NOTIFY's expires")
def keep_notify_dialog(sub: Subscription, r: ResponseInfo, now: float, out: list[Action]) -> None:
    sub._redirects = 0
    sub._contacts = ()
    sub._refresh_at = max(sub._refresh_at, now)
    sub._rearm()


@label("`DropDialog`, `SendInitial(first Contact)`; keep the rest")
def follow_redirect(sub: Subscription, r: ResponseInfo, now: float, out: list[Action]) -> None:
    sub._redirects += 1
    sub._contacts = r.contacts[1:MAX_REDIRECT_CONTACTS]
    _new_dialog(sub, r.contacts[0], out)


@label("`DropDialog`, `SendInitial(next Contact)`")
def try_next_contact(sub: Subscription, r: ResponseInfo, now: float, out: list[Action]) -> None:
    target, sub._contacts = sub._contacts[0], sub._contacts[1:]
    _new_dialog(sub, target, out)


@label("adopt Min-Expires; `DropDialog`, `SendInitial(same target)`")
def resend_with_min_expires(
    sub: Subscription, r: ResponseInfo, now: float, out: list[Action]
) -> None:
    assert r.min_expires is not None  # the guard checked it
    sub._expires = r.min_expires
    _new_dialog(sub, sub._target, out)


@label("adopt Min-Expires; `SendInDialog(Min-Expires)`")
def refresh_with_min_expires(
    sub: Subscription, r: ResponseInfo, now: float, out: list[Action]
) -> None:
    assert r.min_expires is not None
    sub._expires = r.min_expires
    out.append(sub._send_in_dialog(sub._expires))


@label("`DropDialog`, `SendInitial(record)` at once, no failure")
def restart_dialog(sub: Subscription, r: ResponseInfo, now: float, out: list[Action]) -> None:
    _new_dialog(sub, None, out)


@label("arm REFRESH for the retry (refresh-retry formula), nothing emitted")
def retry_refresh_later(sub: Subscription, r: ResponseInfo, now: float, out: list[Action]) -> None:
    sub._refresh_failure = failure_of(r)
    sub._refresh_at = min(now + sub._refresh_retry_delay(r.retry_after, now), sub._expires_at)
    sub._rearm()


@label("error rule")
def fail(sub: Subscription, r: ResponseInfo, now: float, out: list[Action]) -> None:
    kind, code, detail = failure_of(r)
    sub._fail(out, now, kind, code=code, detail=detail, retry_after=r.retry_after)


@label("error rule with the refresh's failure, retry after `on_error_retry_time`")
def fail_expired(sub: Subscription, _: str, now: float, out: list[Action]) -> None:
    assert sub._refresh_failure is not None  # the guard checked it
    kind, code, detail = sub._refresh_failure
    sub._fail(out, now, kind, code=code, detail=f"{detail}; the subscription expired",
              retry_after=None)


@label("error rule (NO_NOTIFY, 0)")
def fail_no_notify(sub: Subscription, _: str, now: float, out: list[Action]) -> None:
    window = NO_NOTIFY_T1_MULTIPLE * sub.t1
    sub._fail(out, now, FailureKind.NO_NOTIFY, code=0,
              detail=f"no NOTIFY within {window:g} s of the 2xx", retry_after=None)


@label("error rule (INTERNAL, 0)")
def fail_internal(sub: Subscription, detail: str, now: float, out: list[Action]) -> None:
    sub._fail(out, now, FailureKind.INTERNAL, code=0, detail=detail, retry_after=None)


@label("arm TERM_WAIT: `wait_for_term_notify`")
def await_terminating_notify(
    sub: Subscription, r: ResponseInfo, now: float, out: list[Action]
) -> None:
    sub._arm(TimerKind.TERM_WAIT, now + sub.params.wait_for_term_notify)


@label("take refresh and expiry from its expires")
def take_notify_grant(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    sub._grant(now, n.expires)


@label("an expires that brings the expiry forward moves it and, if earlier, the refresh")
def shorten_by_notify(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    # Notifiers count their expires down, so most NOTIFYs restate the expiry
    # and change nothing; a later one never moves a retry's Retry-After.
    e = n.expires
    if e is not None and now + e < sub._expires_at:
        sub._expires_at = now + e
        sub._refresh_at = min(sub._refresh_at, now + sub._refresh_interval(e))
        sub._rearm()


_ACTIVE_STATUS = EmitStatus(SubscriptionState.ACTIVE, "")
_PENDING_STATUS = EmitStatus(SubscriptionState.PENDING, "")


@label("`EmitStatus` (active or pending); closes Timer N")
def deliver_status(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    sub.notifies += 1
    sub._got_notify = True
    if sub._no_notify_by is not None:
        sub._no_notify_by = None
        sub._rearm()
    active = n.state == "active"
    if n.reason is None:  # the usual case: shared, immutable actions
        out.append(_ACTIVE_STATUS if active else _PENDING_STATUS)
    else:
        state = SubscriptionState.ACTIVE if active else SubscriptionState.PENDING
        out.append(EmitStatus(state, n.reason))


@label("no status")
def note_notify(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    sub.notifies += 1
    sub._got_notify = True


@label("no status, nothing moves")
def count_late_notify(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    sub.notifies += 1
    sub.ignored += 1


@label("ends(its reason or \"unsubscribed\")")
def end_by_notify(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    sub.notifies += 1
    sub._finish(out, n.reason or _UNSUBSCRIBED, dialog=True)


def _terminated_status(sub: Subscription, n: NotifyInfo, out: list[Action]) -> str:
    sub.notifies += 1
    reason = (n.reason or "").lower()
    out.append(EmitStatus(SubscriptionState.TERMINATED, reason))
    return reason


@label("`EmitStatus(TERMINATED)`, `DropDialog`, final `EmitFailure(TERMINATED)`")
def end_for_good(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    reason = _terminated_status(sub, n, out)
    sub.errors += 1
    sub.last_failure = FailureKind.TERMINATED
    sub._outstanding = False
    sub._disarm()
    out.append(_DROP)
    out.append(EmitFailure(FailureKind.TERMINATED, 0, reason, None))


@label("`EmitStatus(TERMINATED)`, `DropDialog`, `SendInitial(record)`")
def resubscribe_at_once(sub: Subscription, n: NotifyInfo, now: float, out: list[Action]) -> None:
    _terminated_status(sub, n, out)
    sub._last_resubscribe = now
    _new_dialog(sub, None, out)


@label("`EmitStatus(TERMINATED)`, error rule (TERMINATED, its retry-after)")
def retry_after_termination(
    sub: Subscription, n: NotifyInfo, now: float, out: list[Action]
) -> None:
    reason = _terminated_status(sub, n, out)
    sub._fail(out, now, FailureKind.TERMINATED, code=0, detail=reason,
              retry_after=n.retry_after)


# --------------------------------------------------------------------------- rows

CONTROL_ROWS: tuple[Row[str], ...] = (
    Row("start-delayed", (S.UNCONFIRMED,), (E.START,), delayed_start, (delay_start,), S.WAITING),
    Row("start", (S.UNCONFIRMED,), (E.START,), not_started, (send_initial_to_record,),
        S.UNCONFIRMED),
    Row("start-again", ALL, (E.START,), None, (), None),
    Row("retry", (S.WAITING,), (E.TIMER_START_DELAY, E.TIMER_RETRY, E.REFRESH), None,
        (send_initial_to_record,), S.UNCONFIRMED),
    Row("refresh-expired", (S.CONFIRMED,), (E.TIMER_REFRESH,), expired_after_failed_refresh,
        (fail_expired,), S.WAITING),
    Row("refresh", (S.CONFIRMED,), (E.TIMER_REFRESH, E.REFRESH), None, (send_refresh,),
        S.RESUBSCRIPTION),
    Row("refresh-busy", (S.UNCONFIRMED, S.RESUBSCRIPTION, *TEARDOWN, S.DESTROYED), (E.REFRESH,),
        None, (), None),
    Row("no-notify", (S.CONFIRMED, S.RESUBSCRIPTION), (E.TIMER_NO_NOTIFY,), None,
        (fail_no_notify,), S.WAITING),
    Row("term-wait", (S.WAITING_FOR_TERMINATION,), (E.TIMER_TERM_WAIT,), None,
        (end_unsubscribed,), S.DESTROYED),
    Row("spurious-timer", ALL, (E.SPURIOUS_TIMER,), None, (), None),
    Row("unsubscribe-unconfirmed", (S.UNCONFIRMED,), (E.UNSUBSCRIBE,), outstanding,
        (await_answer,), S.UNCONFIRMED_DESTROY),
    Row("unsubscribe-no-dialog", (S.UNCONFIRMED, S.WAITING), (E.UNSUBSCRIBE,), None,
        (end_without_dialog,), S.DESTROYED),
    Row("unsubscribe-confirmed", (S.CONFIRMED,), (E.UNSUBSCRIBE,), None,
        (unsubscribe_in_dialog,), S.PREDESTROYED),
    Row("unsubscribe-resubscription", (S.RESUBSCRIPTION,), (E.UNSUBSCRIBE,), None,
        (await_answer,), S.RESUBSCRIPTION_DESTROY),
    Row("unsubscribe-again", (*TEARDOWN, S.DESTROYED), (E.UNSUBSCRIBE,), None, (), None),
    Row("internal-live", (*LIVE, S.WAITING), (E.INTERNAL,), None, (fail_internal,), S.WAITING),
    Row("internal-teardown", TEARDOWN, (E.INTERNAL,), None, (end_unsubscribed,), S.DESTROYED),
    Row("internal-destroyed", (S.DESTROYED,), (E.INTERNAL,), None, (), None),
)

ANSWER_ROWS: tuple[Row[ResponseInfo], ...] = (
    Row("stale-answer", ALL, (E.STALE,), None, (count_ignored,), None),
    # UNCONFIRMED: the initial SUBSCRIBE of a new dialog is outstanding
    Row("initial-2xx", (S.UNCONFIRMED,), (E.OK,), None, (confirm,), S.CONFIRMED),
    Row("initial-3xx", (S.UNCONFIRMED,), (E.REDIRECT,), redirect_usable, (follow_redirect,),
        S.UNCONFIRMED),
    Row("initial-423", (S.UNCONFIRMED,), (E.REJECT,), larger_min_expires,
        (resend_with_min_expires,), S.UNCONFIRMED),
    Row("initial-lost-after-notify", (S.UNCONFIRMED,), (E.TIMEOUT, E.TRANSPORT),
        dialog_from_notify, (keep_notify_dialog,), S.CONFIRMED),
    Row("initial-next-contact", (S.UNCONFIRMED,), FAILED, contact_left, (try_next_contact,),
        S.UNCONFIRMED),
    Row("initial-failed", (S.UNCONFIRMED,), FAILED, None, (fail,), S.WAITING),
    # RESUBSCRIPTION: a refresh in the dialog is outstanding
    Row("refresh-2xx", (S.RESUBSCRIPTION,), (E.OK,), None, (confirm,), S.CONFIRMED),
    Row("refresh-3xx", (S.RESUBSCRIPTION,), (E.REDIRECT,), redirect_usable, (follow_redirect,),
        S.UNCONFIRMED),
    Row("refresh-423", (S.RESUBSCRIPTION,), (E.REJECT,), larger_min_expires,
        (refresh_with_min_expires,), S.RESUBSCRIPTION),
    Row("refresh-481", (S.RESUBSCRIPTION,), (E.REJECT,), lost_dialog, (restart_dialog,),
        S.UNCONFIRMED),
    Row("refresh-failed-dialog-lives", (S.RESUBSCRIPTION,), FAILED, dialog_outlives_failure,
        (retry_refresh_later,), S.CONFIRMED),
    Row("refresh-failed", (S.RESUBSCRIPTION,), FAILED, None, (fail,), S.WAITING),
    # teardown: an unsubscribe waits for the answer to what was outstanding
    Row("unconfirmed-destroy-2xx", (S.UNCONFIRMED_DESTROY,), (E.OK,), None,
        (unsubscribe_in_dialog,), S.PREDESTROYED),
    Row("unconfirmed-destroy-lost-after-notify", (S.UNCONFIRMED_DESTROY,),
        (E.TIMEOUT, E.TRANSPORT), dialog_from_notify, (unsubscribe_in_dialog,), S.PREDESTROYED),
    Row("resubscription-destroy-2xx", (S.RESUBSCRIPTION_DESTROY,), (E.OK,), None,
        (unsubscribe_in_dialog,), S.PREDESTROYED),
    Row("resubscription-destroy-dialog-lives", (S.RESUBSCRIPTION_DESTROY,), FAILED,
        dialog_outlives_failure, (unsubscribe_in_dialog,), S.PREDESTROYED),
    Row("predestroyed-2xx", (S.PREDESTROYED,), (E.OK,), term_wait_configured,
        (await_terminating_notify,), S.WAITING_FOR_TERMINATION),
    Row("teardown-answered", (S.UNCONFIRMED_DESTROY, S.RESUBSCRIPTION_DESTROY, S.PREDESTROYED),
        ANSWERS, None, (end_unsubscribed,), S.DESTROYED),
)

NOTIFY_ROWS: tuple[Row[NotifyInfo], ...] = (
    Row("notify-no-dialog", (S.WAITING, S.DESTROYED), NOTIFIES, None, (count_ignored,), None,
        reply=481),
    Row("notify-late", (*LIVE, *TEARDOWN), (E.NOTIFY_LATE,), None, (count_late_notify,), None),
    Row("notify-unconfirmed", (S.UNCONFIRMED,), (E.NOTIFY,), None,
        (take_notify_grant, deliver_status), S.UNCONFIRMED),
    Row("notify", (S.CONFIRMED, S.RESUBSCRIPTION), (E.NOTIFY,), None,
        (shorten_by_notify, deliver_status), None),
    Row("terminated-final", LIVE, (E.NOTIFY_TERMINATED,), final_reason, (end_for_good,),
        S.DESTROYED),
    Row("terminated-resubscribe", LIVE, (E.NOTIFY_TERMINATED,), resubscribe_now,
        (resubscribe_at_once,), S.UNCONFIRMED),
    Row("terminated-retry", LIVE, (E.NOTIFY_TERMINATED,), None, (retry_after_termination,),
        S.WAITING),
    Row("teardown-notify", TEARDOWN, (E.NOTIFY,), None, (note_notify,), None),
    Row("teardown-terminated", TEARDOWN, (E.NOTIFY_TERMINATED,), None, (end_by_notify,),
        S.DESTROYED),
)

ROWS: tuple[Row[Any], ...] = (*CONTROL_ROWS, *ANSWER_ROWS, *NOTIFY_ROWS)


def build(rows: Sequence[Row[P]]) -> Table[P]:
    """[state][event] -> the rows to try, in table order."""
    return tuple(
        tuple(tuple(r for r in rows if s in r.states and e in r.events) for e in Event)
        for s in State
    )


CONTROL: Table[str] = build(CONTROL_ROWS)
ANSWER: Table[ResponseInfo] = build(ANSWER_ROWS)
NOTIFY: Table[NotifyInfo] = build(NOTIFY_ROWS)
# Which table an event's rows are in.
TABLE_OF: dict[Event, Table[Any]] = {
    **{e: CONTROL for e in Event},
    **{e: ANSWER for e in (*ANSWERS, E.STALE)},
    **{e: NOTIFY for e in NOTIFIES},
}
