"""The life of one (record, subscriber) SIP subscription, without any I/O.

The engine turns SIP messages and timer expiries into calls on a
:class:`Subscription` and turns the returned actions into SIP requests and
consumer messages. Nothing here knows about bytes, sockets or asyncio, so
every path can be tested on a fake clock: ``now`` is a plain float of seconds.

The machine is the SER ``presence_b2b`` one (same states, same numbering,
same timer formulas) with its bugs fixed and the RFC 6665 behaviour it
lacked; ``docs/subscription-state-machine.md`` has the table and the list of
differences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from ..presence.status import FailureKind, SubscriptionState

__all__ = [
    "FINAL_REASONS",
    "MAX_REDIRECTS",
    "MIN_RETRY_DELAY",
    "NO_NOTIFY_T1_MULTIPLE",
    "RESUBSCRIBE_AT_ONCE_REASONS",
    "Action",
    "DropDialog",
    "EmitFailure",
    "EmitStatus",
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


class State(IntEnum):
    """The original's states, numbered as its ``trace`` RPC printed them."""

    UNCONFIRMED = 0
    UNCONFIRMED_DESTROY = 1
    CONFIRMED = 2
    WAITING = 3
    RESUBSCRIPTION = 4
    RESUBSCRIPTION_DESTROY = 5
    WAITING_FOR_TERMINATION = 6
    PREDESTROYED = 7
    DESTROYED = 8


class TimerKind(StrEnum):
    """What the one deadline of a subscription is for (also a metrics label)."""

    START_DELAY = "start-delay"
    REFRESH = "refresh"
    RETRY = "retry"
    TERM_WAIT = "term-wait"
    NO_NOTIFY = "no-notify"


# Follow at most this many 3xx in a row before treating the next one as an error.
MAX_REDIRECTS = 5
# No retry is ever scheduled sooner than this, whatever Retry-After says.
MIN_RETRY_DELAY = 1.0
# RFC 6665 4.1.2.4: no NOTIFY within 64*T1 of the 2xx means the subscription failed.
NO_NOTIFY_T1_MULTIPLE = 64
# Subscription-State: terminated reasons (RFC 6665 4.1.3) that call for a new
# subscription at once, and those after which retrying is pointless.
RESUBSCRIBE_AT_ONCE_REASONS = frozenset({"deactivated", "timeout"})
FINAL_REASONS = frozenset({"rejected", "noresource", "invariant"})

_ACTIVE_STATES = frozenset({State.UNCONFIRMED, State.CONFIRMED, State.RESUBSCRIPTION})
_TEARDOWN_STATES = frozenset(
    {
        State.UNCONFIRMED_DESTROY,
        State.RESUBSCRIPTION_DESTROY,
        State.PREDESTROYED,
        State.WAITING_FOR_TERMINATION,
    }
)
_UNSUBSCRIBED = "unsubscribed"


# --------------------------------------------------------------------------- params


@dataclass(frozen=True, slots=True)
class MachineParams:
    """What the machine needs of the configuration: the seed's timer parameters
    (same names and defaults as ``[presence_b2b]``) and the SIP T1 that sizes the
    no-NOTIFY window. The engine builds it; the machine never reads the config."""

    default_expiration: int = 3600
    on_error_retry_time: int = 120
    wait_for_term_notify: int = 30
    resubscribe_delta: int = 30
    min_resubscribe_time: int = 30
    max_subscribe_delay: int = 0
    t1: float = 0.5


class UnexpectedEvent(Exception):  # noqa: N818 (the name the design uses)
    """An event arrived in a state that has no row for it: a bug, never a stall.

    The engine turns it into a counted ``internal`` failure of that subscription."""

    def __init__(self, state: State, event: str) -> None:
        super().__init__(f"no transition for {event} in state {state.name}")
        self.state = state
        self.event = event


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """A final response to one of our SUBSCRIBEs, as the engine parsed it.

    ``expires``/``min_expires``/``retry_after`` are None when the header is
    missing or not a valid number. ``contacts`` are a 3xx's SIP/SIPS Contact
    URIs in the order to try them (highest q first; the engine drops others).
    ``txn`` echoes the ``txn`` of the Send action the response answers;
    when given, a response for any other request is ignored as stale.
    """

    code: int
    reason: str = ""
    expires: int | None = None
    min_expires: int | None = None
    retry_after: int | None = None
    contacts: tuple[str, ...] = ()
    txn: int | None = None


@dataclass(frozen=True, slots=True)
class NotifyInfo:
    """The Subscription-State of a NOTIFY that matched this subscription's dialog.

    ``state`` is the lower-cased substate token; ``in_order`` is False when the
    NOTIFY's CSeq is not above the last one seen (re-ordered or retransmitted).
    """

    state: str
    reason: str | None = None
    expires: int | None = None
    retry_after: int | None = None
    in_order: bool = True


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendInitial:
    """Send an out-of-dialog SUBSCRIBE on a new dialog (new Call-ID and tag, CSeq 1).

    ``target`` is a 3xx Contact, or None for the record itself. ``txn`` numbers
    the request so its response can be told apart from stale ones.
    """

    target: str | None
    expires: int
    txn: int = 0


@dataclass(frozen=True, slots=True)
class SendInDialog:
    """Send a SUBSCRIBE in the current dialog: a refresh, or an unsubscribe (expires 0)."""

    expires: int
    txn: int = 0


@dataclass(frozen=True, slots=True)
class DropDialog:
    """Forget the current dialog: later NOTIFYs for it get 481 and responses to
    requests sent in it are not delivered (or carry a stale ``txn``)."""


@dataclass(frozen=True, slots=True)
class EmitStatus:
    """Deliver a Status to the consumers; for a NOTIFY the engine attaches the body."""

    state: SubscriptionState
    reason: str


@dataclass(frozen=True, slots=True)
class EmitFailure:
    """Deliver a Failure; ``retry_in`` None means final: nothing more will come."""

    kind: FailureKind
    code: int
    detail: str
    retry_in: float | None


Action = SendInitial | SendInDialog | DropDialog | EmitStatus | EmitFailure

_DROP = DropDialog()
_DEFAULT_RNG = random.Random()


def _detail(code: int, reason: str) -> str:
    return f"{code} {reason}".rstrip()


# --------------------------------------------------------------------------- machine


class Subscription:
    """One subscription's state, its one deadline, and a few counters.

    There may be a million of these in a shard, so everything lives in slots
    and holds ints, floats or references to shared objects (the params, the
    rng, the record strings the engine already keeps).
    """

    __slots__ = (
        "_expires",
        "_got_notify",
        "_last_resubscribe",
        "_no_notify_by",
        "_outstanding",
        "_redirects",
        "_refresh_at",
        "_target",
        "_txn",
        "_unsubscribed",
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
        self.timer_seq = 0  # owned by shard.timers.TimerQueue
        # The Expires asked for; raised for good by a 423's Min-Expires.
        self._expires = params.default_expiration
        self._txn = 0  # number of the last SUBSCRIBE sent
        self._outstanding = False  # a SUBSCRIBE is waiting for its final response
        self._refresh_at = 0.0  # when a CONFIRMED subscription refreshes
        self._no_notify_by: float | None = None  # end of the 64*T1 window, while open
        self._got_notify = False  # a NOTIFY arrived in the current dialog
        self._target: str | None = None  # 3xx Contact the current dialog went to
        self._redirects = 0  # 3xx followed in a row
        self._last_resubscribe: float | None = None  # last at-once re-subscribe
        self._unsubscribed = False
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
        """A SUBSCRIBE has been sent and its final response is awaited."""
        return self._outstanding

    @property
    def txn(self) -> int:
        """Number of the last SUBSCRIBE sent (see ``ResponseInfo.txn``)."""
        return self._txn

    @property
    def expires(self) -> int:
        """The Expires this subscription asks for in every non-zero SUBSCRIBE."""
        return self._expires

    def snapshot(self) -> dict[str, object]:
        """Everything an operator's ``show`` wants, as plain values."""
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
            "target": self._target,
            "redirects": self._redirects,
            "unsubscribed": self._unsubscribed,
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
        if self._txn or self.state is not State.UNCONFIRMED or self.deadline is not None:
            return []  # started already
        spread = self.params.max_subscribe_delay
        if spread > 0:
            rng = self.rng if self.rng is not None else _DEFAULT_RNG
            self.state = State.WAITING
            self._arm(TimerKind.START_DELAY, now + rng.randint(1, spread))
            return []
        return [self._send_initial(None)]

    def on_response(self, r: ResponseInfo, now: float) -> list[Action]:
        """A final response to the outstanding SUBSCRIBE."""
        if (
            r.code < 200
            or not self._outstanding
            or (r.txn is not None and r.txn != self._txn)
        ):
            self.ignored += 1  # late, duplicate or provisional: never acted on twice
            return []
        self._outstanding = False
        self.last_code = r.code
        state = self.state
        if state is State.UNCONFIRMED or state is State.RESUBSCRIPTION:
            return self._active_response(r, now)
        if state is State.UNCONFIRMED_DESTROY or state is State.RESUBSCRIPTION_DESTROY:
            dialog_lives = 200 <= r.code < 300 or (
                r.code == 423 and state is State.RESUBSCRIPTION_DESTROY
            )
            if dialog_lives:
                self.state = State.PREDESTROYED
                return [self._send_in_dialog(0)]
            return self._finish(_UNSUBSCRIBED, dialog=True)
        if state is State.PREDESTROYED:
            if 200 <= r.code < 300 and self.params.wait_for_term_notify > 0:
                self.state = State.WAITING_FOR_TERMINATION
                self._arm(TimerKind.TERM_WAIT, now + self.params.wait_for_term_notify)
                return []
            return self._finish(_UNSUBSCRIBED, dialog=True)
        self.ignored += 1  # unreachable: no state without a request has _outstanding set
        return []

    def on_timeout(self, now: float, txn: int | None = None) -> list[Action]:
        """The outstanding SUBSCRIBE got no final response (Timer F) or could not be sent."""
        if not self._outstanding or (txn is not None and txn != self._txn):
            self.ignored += 1
            return []
        self._outstanding = False
        self.last_code = 408
        state = self.state
        if state is State.UNCONFIRMED or state is State.RESUBSCRIPTION:
            return self._fail(now, FailureKind.TIMEOUT, 408, "no response to SUBSCRIBE", None)
        return self._finish(_UNSUBSCRIBED, dialog=True)

    def on_transport_error(self, now: float, txn: int | None, detail: str) -> list[Action]:
        """The outstanding SUBSCRIBE could not be sent (or its connection failed)."""
        if not self._outstanding or (txn is not None and txn != self._txn):
            self.ignored += 1
            return []
        self._outstanding = False
        state = self.state
        if state is State.UNCONFIRMED or state is State.RESUBSCRIPTION:
            return self._fail(now, FailureKind.TRANSPORT, 0, detail, None)
        return self._finish(_UNSUBSCRIBED, dialog=True)

    def on_internal_error(self, now: float, detail: str) -> list[Action]:
        """Something unexpected happened while handling this subscription: fail it
        (retry later) rather than leave it without a timer or a transaction."""
        if self.state is State.DESTROYED:
            return []
        if self._unsubscribed:
            return self._finish(_UNSUBSCRIBED, dialog=True)
        return self._fail(now, FailureKind.INTERNAL, 0, detail, None)

    def on_notify(self, n: NotifyInfo, now: float) -> tuple[int, list[Action]]:
        """A NOTIFY in this subscription's dialog: the reply code and the actions."""
        state = self.state
        if state is State.WAITING or state is State.DESTROYED:
            self.ignored += 1  # no dialog: the engine should have answered 481 itself
            return 481, []
        self.notifies += 1
        if not n.in_order:
            self.ignored += 1  # an older NOTIFY than one already acted on
            return 200, []
        terminated = n.state == "terminated"
        if state in _TEARDOWN_STATES:
            if terminated:
                return 200, self._finish(n.reason or _UNSUBSCRIBED, dialog=True)
            return 200, []
        if terminated:
            return 200, self._terminated(n, now)
        self._got_notify = True
        self._no_notify_by = None
        if state is State.CONFIRMED and n.expires is not None:
            self._refresh_at = min(self._refresh_at, now + self._refresh_interval(n.expires))
        self._rearm()
        sub_state = SubscriptionState.ACTIVE if n.state == "active" else SubscriptionState.PENDING
        return 200, [EmitStatus(sub_state, n.reason or "")]

    def on_timer(self, now: float) -> list[Action]:
        """The deadline passed. Early or spurious calls are ignored."""
        if self.deadline is None or now < self.deadline:
            return []
        kind = self.timer_kind
        self._disarm()
        state = self.state
        if state is State.WAITING:  # START_DELAY or RETRY
            return [self._send_initial(None)]
        if state is State.CONFIRMED and kind is TimerKind.REFRESH:
            return self._send_refresh()
        if kind is TimerKind.NO_NOTIFY:  # CONFIRMED or RESUBSCRIPTION
            window = NO_NOTIFY_T1_MULTIPLE * self.t1
            return self._fail(
                now, FailureKind.NO_NOTIFY, 0, f"no NOTIFY within {window:g} s of the 2xx", None
            )
        if state is State.WAITING_FOR_TERMINATION:
            return self._finish(_UNSUBSCRIBED, dialog=True)
        return []

    def unsubscribe(self, now: float) -> list[Action]:
        """The consumer is done: tear down, then one final TERMINATED status."""
        if self._unsubscribed or self.state is State.DESTROYED:
            return []
        self._unsubscribed = True
        state = self.state
        if state is State.CONFIRMED:
            self._disarm()
            self.state = State.PREDESTROYED
            return [self._send_in_dialog(0)]
        if state is State.UNCONFIRMED and self._outstanding:
            self.state = State.UNCONFIRMED_DESTROY
        elif state is State.RESUBSCRIPTION:
            self.state = State.RESUBSCRIPTION_DESTROY
        else:  # WAITING, or never started: no dialog, nothing to send
            return self._finish(_UNSUBSCRIBED, dialog=False)
        self._disarm()  # the outstanding response decides what happens next
        return []

    def refresh(self, now: float) -> list[Action]:
        """Operator's ``refresh``: refresh a confirmed dialog or end a wait now."""
        if self.state is State.CONFIRMED:
            self._disarm()
            return self._send_refresh()
        if self.state is State.WAITING:
            self._disarm()
            return [self._send_initial(None)]
        return []

    # ------------------------------------------------------------------ internals

    def _arm(self, kind: TimerKind, at: float) -> None:
        self.deadline = at
        self.timer_kind = kind

    def _disarm(self) -> None:
        self.deadline = None
        self.timer_kind = None

    def _rearm(self) -> None:
        """Point the deadline at whichever of refresh / NOTIFY window comes first."""
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
        """max(granted - resubscribe_delta, min_resubscribe_time); no grant -> the minimum."""
        p = self.params
        if granted is None:
            return float(p.min_resubscribe_time)
        return float(max(granted - p.resubscribe_delta, p.min_resubscribe_time))

    def _retry_delay(self, retry_after: int | None) -> float:
        delay = self.params.on_error_retry_time if retry_after is None else retry_after
        return max(MIN_RETRY_DELAY, float(delay))

    def _send_initial(self, target: str | None) -> SendInitial:
        if self._txn:
            self.retries += 1
        self._txn += 1
        self._outstanding = True
        self.state = State.UNCONFIRMED
        self._target = target
        self._got_notify = False
        self._no_notify_by = None
        self._disarm()
        return SendInitial(target, self._expires, self._txn)

    def _send_in_dialog(self, expires: int) -> SendInDialog:
        self._txn += 1
        self._outstanding = True
        return SendInDialog(expires, self._txn)

    def _send_refresh(self) -> list[Action]:
        self.state = State.RESUBSCRIPTION
        action = self._send_in_dialog(self._expires)
        self._rearm()  # keeps a still-open NOTIFY window armed
        return [action]

    def _active_response(self, r: ResponseInfo, now: float) -> list[Action]:
        """A final response to an initial SUBSCRIBE (UNCONFIRMED) or a refresh (RESUBSCRIPTION)."""
        code = r.code
        initial = self.state is State.UNCONFIRMED
        if 200 <= code < 300:
            self._redirects = 0
            self.state = State.CONFIRMED
            self._refresh_at = now + self._refresh_interval(r.expires)
            if initial and not self._got_notify:
                self._no_notify_by = now + NO_NOTIFY_T1_MULTIPLE * self.t1
            self._rearm()
            return []
        if 300 <= code < 400:
            if code != 305 and r.contacts and self._redirects < MAX_REDIRECTS:
                self._redirects += 1
                return [_DROP, self._send_initial(r.contacts[0])]
        elif code == 423:
            if r.min_expires is not None and r.min_expires > self._expires:
                self._expires = r.min_expires
                if initial:
                    return [_DROP, self._send_initial(self._target)]
                return [self._send_in_dialog(self._expires)]
        elif code == 481 and not initial:
            # The notifier lost the dialog: start over at once, silently.
            return [_DROP, self._send_initial(None)]
        return self._fail(
            now, FailureKind.SIP_ERROR, code, _detail(code, r.reason), r.retry_after
        )

    def _terminated(self, n: NotifyInfo, now: float) -> list[Action]:
        """Subscription-State: terminated in an active state, handled by its reason."""
        reason = (n.reason or "").lower()
        actions: list[Action] = [EmitStatus(SubscriptionState.TERMINATED, reason)]
        if reason in FINAL_REASONS:
            self.errors += 1
            self.last_failure = FailureKind.TERMINATED
            self.state = State.DESTROYED
            self._outstanding = False
            self._disarm()
            actions += (_DROP, EmitFailure(FailureKind.TERMINATED, 0, reason, None))
            return actions
        if reason in RESUBSCRIBE_AT_ONCE_REASONS and n.retry_after is None:
            last = self._last_resubscribe
            if last is None or now - last >= self.params.on_error_retry_time:
                self._last_resubscribe = now
                actions += (_DROP, self._send_initial(None))
                return actions
        actions += self._fail(now, FailureKind.TERMINATED, 0, reason, n.retry_after)
        return actions

    def _fail(
        self, now: float, kind: FailureKind, code: int, detail: str, retry_after: int | None
    ) -> list[Action]:
        """Drop the dialog, tell the consumer, and retry on a new dialog later."""
        delay = self._retry_delay(retry_after)
        self.errors += 1
        self.last_failure = kind
        self.state = State.WAITING
        self._outstanding = False
        self._redirects = 0
        self._target = None
        self._no_notify_by = None
        self._arm(TimerKind.RETRY, now + delay)
        return [_DROP, EmitFailure(kind, code, detail, delay)]

    def _finish(self, reason: str, *, dialog: bool) -> list[Action]:
        """End of an unsubscribe: the consumer's one final TERMINATED status."""
        self.state = State.DESTROYED
        self._outstanding = False
        self._disarm()
        status = EmitStatus(SubscriptionState.TERMINATED, reason)
        return [_DROP, status] if dialog else [status]
