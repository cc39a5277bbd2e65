"""The life of one (record, subscriber) SIP subscription, without any I/O.

The engine turns SIP messages and timer expiries into calls on a
:class:`Subscription` and turns the returned actions into SIP requests and
consumer messages. Nothing here knows about bytes, sockets or asyncio, so
every path can be tested on a fake clock: ``now`` is a plain float of seconds.

The machine is the SER ``presence_b2b`` one (same states, same numbering,
same timer formulas) with its bugs fixed and the RFC 6665 behaviour it
lacked. What it does is the transition table in :mod:`.transitions`; this
module keeps one subscription's data, classifies each call into an event and
dispatches through the table. ``docs/subscription-state-machine.md`` prints
the table and lists the differences from the original.
"""

from __future__ import annotations

import math
import random
from typing import Any, TypeVar

from ..presence.status import FailureKind, SubscriptionState
from . import transitions as _t
from .subscription_io import (
    FINAL_REASONS,
    MAX_REDIRECT_CONTACTS,
    MAX_REDIRECTS,
    MIN_RETRY_DELAY,
    NO_NOTIFY_T1_MULTIPLE,
    REFRESH_FAILURE_ENDS,
    REFRESH_FRACTION,
    RESUBSCRIBE_AT_ONCE_REASONS,
    Action,
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
    TimerKind,
    UnexpectedEvent,
)

__all__ = [
    "FINAL_REASONS",
    "MAX_REDIRECTS",
    "MAX_REDIRECT_CONTACTS",
    "MIN_RETRY_DELAY",
    "NO_NOTIFY_T1_MULTIPLE",
    "REFRESH_FAILURE_ENDS",
    "REFRESH_FRACTION",
    "RESUBSCRIBE_AT_ONCE_REASONS",
    "Action",
    "DropDialog",
    "EmitFailure",
    "EmitStatus",
    "Event",
    "MachineParams",
    "NotifyInfo",
    "ResponseInfo",
    "SendInDialog",
    "SendInitial",
    "State",
    "Subscription",
    "TimerKind",
    "UnexpectedEvent",
]

P = TypeVar("P")

_DROP = DropDialog()
_DEFAULT_RNG = random.Random()
_TIMER_EVENTS = {
    TimerKind.START_DELAY: Event.TIMER_START_DELAY,
    TimerKind.REFRESH: Event.TIMER_REFRESH,
    TimerKind.RETRY: Event.TIMER_RETRY,
    TimerKind.TERM_WAIT: Event.TIMER_TERM_WAIT,
    TimerKind.NO_NOTIFY: Event.TIMER_NO_NOTIFY,
}
_RESPONSE_EVENTS = (Event.OK, Event.REDIRECT, Event.REJECT, Event.REJECT, Event.REJECT)
_ANSWER = _t.ANSWER
_CONTROL = _t.CONTROL
_NOTIFY = _t.NOTIFY
_NOTIFY_EVENT = Event.NOTIFY
_NOTIFY_TERMINATED = Event.NOTIFY_TERMINATED
_NOTIFY_LATE = Event.NOTIFY_LATE


class Subscription:
    """One subscription's state, its one deadline, and a few counters.

    There may be a million of these in a shard, so everything lives in slots
    and holds ints, floats or references to shared objects (the params, the
    rng, the record strings the engine already keeps).
    """

    __slots__ = (
        "_contacts",
        "_expires",
        "_expires_at",
        "_got_notify",
        "_last_resubscribe",
        "_no_notify_by",
        "_outstanding",
        "_redirects",
        "_refresh_at",
        "_refresh_failure",
        "_target",
        "_txn",
        "deadline",
        "errors",
        "ignored",
        "last_code",
        "last_failure",
        "notifies",
        "params",
        "record",
        "retries",
        "rng",
        "state",
        "sub_id",
        "subscriber",
        "t1",
        "timer_kind",
        "timer_seq",
    )

    def __init__(
        self,
        sub_id: int,
        record: str,
        subscriber: str,
        params: MachineParams,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.sub_id = sub_id
        self.record = record
        self.subscriber = subscriber
        self.params = params
        self.t1 = params.t1
        self.rng = rng
        self.state = State.UNCONFIRMED
        self.deadline: float | None = None
        self.timer_kind: TimerKind | None = None
        self.timer_seq = 0  # owned by sip.timers.TimerQueue
        # The Expires asked for; raised for good by a 423's Min-Expires.
        self._expires = params.default_expiration
        self._txn = 0  # number of the last SUBSCRIBE sent
        self._outstanding = False  # a SUBSCRIBE is waiting for its final answer
        self._refresh_at = 0.0  # when a CONFIRMED subscription refreshes
        self._expires_at = math.inf  # when the current dialog's subscription expires
        self._no_notify_by: float | None = None  # end of Timer N, while it runs
        self._got_notify = False  # a NOTIFY arrived since the last SUBSCRIBE was sent
        self._target: str | None = None  # 3xx Contact the current dialog went to
        self._contacts: tuple[str, ...] = ()  # Contacts of the last 3xx not tried yet
        self._redirects = 0  # 3xx followed in a row
        self._last_resubscribe: float | None = None  # last at-once re-subscribe
        # (kind, code, detail) of a failed refresh not reported yet: the dialog
        # lives until _expires_at and the refresh is retried before then.
        self._refresh_failure: tuple[FailureKind, int, str] | None = None
        self.notifies = 0
        self.errors = 0
        self.retries = 0
        self.ignored = 0
        self.last_code = 0
        self.last_failure: FailureKind | None = None

    # ------------------------------------------------------------------ queries

    @property
    def finished(self) -> bool:
        """DESTROYED: nothing more will happen; the engine drops the object."""
        return self.state is State.DESTROYED

    @property
    def outstanding(self) -> bool:
        """A SUBSCRIBE has been sent and its final answer is awaited."""
        return self._outstanding

    @property
    def txn(self) -> int:
        """Number of the last SUBSCRIBE sent (see ``ResponseInfo.txn``)."""
        return self._txn

    @property
    def expires(self) -> int:
        """The Expires this subscription asks for in every non-zero SUBSCRIBE."""
        return self._expires

    @property
    def expires_at(self) -> float | None:
        """When the current dialog's subscription expires, if one is known."""
        at = self._expires_at
        return None if at == math.inf or self.state not in _DIALOG_STATES else at

    @property
    def refresh_due(self) -> float | None:
        """When a confirmed subscription means to refresh (None in other states)."""
        return self._refresh_at if self.state in _STORED_STATES else None

    def snapshot(self) -> dict[str, object]:
        """Everything an operator's ``show`` wants, as plain values."""
        failure = self._refresh_failure
        return {
            "id": self.sub_id,
            "record": self.record,
            "subscriber": self.subscriber,
            "state": self.state.name.lower(),
            "state_code": int(self.state),
            "deadline": self.deadline,
            "timer": None if self.timer_kind is None else str(self.timer_kind),
            "outstanding": self._outstanding,
            "expires": self._expires,
            "refresh_at": self._refresh_at if self.state is State.CONFIRMED else None,
            "expires_at": self.expires_at,
            "refresh_failed": None if failure is None else failure[2],
            "target": self._target,
            "redirects": self._redirects,
            "unsubscribed": self.state in _t.TEARDOWN,
            "notifies": self.notifies,
            "errors": self.errors,
            "retries": self.retries,
            "ignored": self.ignored,
            "last_code": self.last_code,
            "last_failure": None if self.last_failure is None else str(self.last_failure),
        }

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.sub_id} {self.state.name} "
            f"deadline={self.deadline} timer={self.timer_kind}>"
        )

    # ------------------------------------------------------------------ events

    def start(self, now: float) -> list[Action]:
        """Begin: the first SUBSCRIBE now, or after a random 1..max_subscribe_delay s."""
        return self._control(Event.START, "", now)

    def on_response(self, r: ResponseInfo, now: float) -> list[Action]:
        """A final response to the outstanding SUBSCRIBE."""
        code = r.code
        if code < 200 or not self._outstanding or (r.txn is not None and r.txn != self._txn):
            event = Event.STALE  # late, duplicate or provisional: never acted on twice
        else:
            self._outstanding = False
            self.last_code = code
            event = _RESPONSE_EVENTS[min(code // 100, 6) - 2]
        return self._run(_ANSWER, event, r, now)

    def on_timeout(self, now: float, txn: int | None = None) -> list[Action]:
        """The outstanding SUBSCRIBE got no final response (Timer F)."""
        return self._local_answer(Event.TIMEOUT, _t.TIMED_OUT, txn, now)

    def on_transport_error(
        self,
        now: float,
        txn: int | None,
        detail: str,
        kind: FailureKind = FailureKind.TRANSPORT,
    ) -> list[Action]:
        """The outstanding SUBSCRIBE could not be sent (or its connection failed);
        ``kind`` says why: transport, dns or tls."""
        return self._local_answer(
            Event.TRANSPORT, ResponseInfo(0, detail, failure_kind=kind), txn, now
        )

    def on_internal_error(self, now: float, detail: str) -> list[Action]:
        """Something unexpected happened while handling this subscription: fail it
        (retry later) rather than leave it without a timer or a transaction."""
        return self._control(Event.INTERNAL, detail, now)

    def on_notify(self, n: NotifyInfo, now: float) -> tuple[int, list[Action]]:
        """A NOTIFY in this subscription's dialog: the reply code and the actions."""
        if not n.in_order:
            event = _NOTIFY_LATE
        elif n.state == "terminated":
            event = _NOTIFY_TERMINATED
        else:
            event = _NOTIFY_EVENT
        out: list[Action] = []
        # _dispatch inlined: this is the hot path of the whole service.
        for row in _NOTIFY[self.state][event]:
            guard = row.guard
            if guard is None or guard(self, n, now):
                if row.next is not None:
                    self.state = row.next
                for act in row.actions:
                    act(self, n, now, out)
                return row.reply, out
        raise UnexpectedEvent(self.state, event.name.lower())

    def on_timer(self, now: float) -> list[Action]:
        """The deadline passed. Early or spurious calls are ignored."""
        kind = self.timer_kind
        if kind is None or self.deadline is None or now < self.deadline:
            return self._control(Event.SPURIOUS_TIMER, "", now)
        self._disarm()  # spent: the row arms the next one
        return self._control(_TIMER_EVENTS[kind], "", now)

    def resume(self, now: float, refresh_at: float, expires_at: float) -> None:
        """Become a confirmed subscription whose dialog outlived an earlier
        process (the store gave it back): the next refresh goes out in the
        dialog at ``refresh_at``. A new object only; no SUBSCRIBE was sent by
        this process, so there is nothing outstanding and no transaction."""
        if self.state is not State.UNCONFIRMED or self._txn:
            raise ValueError("only a subscription that never started can resume")
        self.state = State.CONFIRMED
        self._got_notify = True
        self._refresh_at = max(refresh_at, now)
        self._expires_at = expires_at
        self._rearm()

    def unsubscribe(self, now: float) -> list[Action]:
        """The consumer is done: tear down, then one final TERMINATED status."""
        return self._control(Event.UNSUBSCRIBE, "", now)

    def refresh(self, now: float) -> list[Action]:
        """Operator's ``refresh``: refresh a confirmed dialog or end a wait now."""
        return self._control(Event.REFRESH, "", now)

    # ------------------------------------------------------------------ dispatch

    def row_for(self, event: Event, payload: object, now: float) -> _t.Row[Any] | None:
        """The row ``event`` would take now, without taking it (for tests and tools)."""
        for row in _t.TABLE_OF[event][self.state][event]:
            if row.guard is None or row.guard(self, payload, now):
                return row
        return None

    def _control(self, event: Event, detail: str, now: float) -> list[Action]:
        return self._run(_CONTROL, event, detail, now)

    def _local_answer(
        self, event: Event, payload: ResponseInfo, txn: int | None, now: float
    ) -> list[Action]:
        if not self._outstanding or (txn is not None and txn != self._txn):
            event = Event.STALE
        else:
            self._outstanding = False
            if event is Event.TIMEOUT:
                self.last_code = 408
        return self._run(_ANSWER, event, payload, now)

    def _run(self, table: _t.Table[P], event: Event, payload: P, now: float) -> list[Action]:
        out: list[Action] = []
        self._dispatch(table[self.state][event], event, payload, now, out)
        return out

    def _dispatch(
        self, rows: tuple[_t.Row[P], ...], event: Event, payload: P, now: float, out: list[Action]
    ) -> None:
        """Take the first row whose guard holds: state first, then its actions."""
        for row in rows:
            guard = row.guard
            if guard is None or guard(self, payload, now):
                if row.next is not None:
                    self.state = row.next
                for act in row.actions:
                    act(self, payload, now, out)
                return
        raise UnexpectedEvent(self.state, event.name.lower())

    # ------------------------------------------------------------------ primitives
    # (what the table's actions are made of)

    def _rng(self) -> random.Random:
        return self.rng if self.rng is not None else _DEFAULT_RNG

    def _arm(self, kind: TimerKind, at: float) -> None:
        self.deadline = at
        self.timer_kind = kind

    def _disarm(self) -> None:
        self.deadline = None
        self.timer_kind = None

    def _rearm(self) -> None:
        """Point the deadline at whichever of refresh / Timer N comes first."""
        window = self._no_notify_by
        if self.state is State.CONFIRMED:
            if window is not None and window < self._refresh_at:
                self._arm(TimerKind.NO_NOTIFY, window)
            else:
                self._arm(TimerKind.REFRESH, self._refresh_at)
        elif window is not None:
            self._arm(TimerKind.NO_NOTIFY, window)
        else:
            self._disarm()

    def _refresh_interval(self, granted: int | None) -> float:
        """``max(E - resubscribe_delta, min(min_resubscribe_time, E/2))``: the floor
        never pushes a refresh past half the grant, so it always goes out before
        the expiry (1 s floor against a grant of 0). Without a grant (bug 3):
        min_resubscribe_time, at most half the asked expiry."""
        p = self.params
        if granted is None:
            lead = min(float(p.min_resubscribe_time), self._expires * REFRESH_FRACTION)
        else:
            half = granted * REFRESH_FRACTION
            floor = min(float(p.min_resubscribe_time), half)
            lead = max(float(granted - p.resubscribe_delta), floor)
            if lead >= granted:  # resubscribe_delta 0 would refresh at the expiry
                lead = half
        return max(lead, MIN_RETRY_DELAY)

    def _grant(self, now: float, granted: int | None) -> None:
        """Refresh and expiry from a 2xx's Expires (or an early NOTIFY's expires)."""
        self._refresh_at = now + self._refresh_interval(granted)
        self._expires_at = now + (self._expires if granted is None else granted)

    def _retry_delay(self, retry_after: int | None) -> float:
        delay = self.params.on_error_retry_time if retry_after is None else retry_after
        return max(MIN_RETRY_DELAY, float(delay))

    def _refresh_retry_delay(self, retry_after: int | None, now: float) -> float:
        """Retry-After, else half the dialog's remaining life, at most on_error_retry_time."""
        if retry_after is not None:
            return max(MIN_RETRY_DELAY, float(retry_after))
        half = (self._expires_at - now) / 2
        return max(MIN_RETRY_DELAY, min(float(self.params.on_error_retry_time), half))

    def _send_initial(self, target: str | None) -> SendInitial:
        if self._txn:
            self.retries += 1
        self._txn += 1
        self._outstanding = True
        self._target = target
        self._got_notify = False
        self._no_notify_by = None
        self._refresh_failure = None
        self._expires_at = math.inf
        self._disarm()
        return SendInitial(target, self._expires, self._txn)

    def _send_in_dialog(self, expires: int) -> SendInDialog:
        self._txn += 1
        self._outstanding = True
        return SendInDialog(expires, self._txn)

    def _fail(
        self,
        out: list[Action],
        now: float,
        kind: FailureKind,
        *,
        code: int,
        detail: str,
        retry_after: int | None,
    ) -> None:
        """Drop the dialog, tell the consumer, and retry on a new dialog later."""
        delay = self._retry_delay(retry_after)
        self.errors += 1
        self.last_failure = kind
        self._outstanding = False
        self._redirects = 0
        self._contacts = ()
        self._target = None
        self._no_notify_by = None
        self._refresh_failure = None
        self._arm(TimerKind.RETRY, now + delay)
        out.append(_DROP)
        out.append(EmitFailure(kind, code, detail, delay))

    def _finish(self, out: list[Action], reason: str, *, dialog: bool) -> None:
        """End of an unsubscribe: the consumer's one final TERMINATED status."""
        self._outstanding = False
        self._disarm()
        if dialog:
            out.append(_DROP)
        out.append(EmitStatus(SubscriptionState.TERMINATED, reason))


_DIALOG_STATES = frozenset(_t.LIVE + _t.TEARDOWN)
#: States whose dialog the store keeps: confirmed, or refreshing in the dialog.
_STORED_STATES = frozenset((State.CONFIRMED, State.RESUBSCRIPTION))
