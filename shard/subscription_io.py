"""What goes into and out of the subscription machine: its states, events,
parameters and actions.

They live apart from :mod:`.subscription` (which re-exports them) so that the
transition table in :mod:`.transitions` can name them without importing the
machine that dispatches through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from ..presence.status import FailureKind, SubscriptionState


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


class Event(IntEnum):
    """What the machine reacts to: the rows of the transition table are keyed by
    (State, Event). The engine never names these; the public methods classify."""

    START = 0
    OK = 1  # 2xx to the outstanding SUBSCRIBE
    REDIRECT = 2  # 3xx
    REJECT = 3  # 4xx, 5xx, 6xx
    TIMEOUT = 4  # Timer F, or the request could not be built
    TRANSPORT = 5  # the request could not be sent, or its connection failed
    STALE = 6  # an answer (or timeout) for no outstanding SUBSCRIBE, or a 1xx
    NOTIFY = 7  # in order, active, pending or an unknown substate
    NOTIFY_TERMINATED = 8
    NOTIFY_LATE = 9  # CSeq not above the last one seen
    TIMER_START_DELAY = 10
    TIMER_REFRESH = 11
    TIMER_RETRY = 12
    TIMER_TERM_WAIT = 13
    TIMER_NO_NOTIFY = 14
    SPURIOUS_TIMER = 15  # on_timer before the deadline, or without one
    UNSUBSCRIBE = 16
    REFRESH = 17  # the operator's refresh command
    INTERNAL = 18  # the engine caught an error while handling this subscription


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
# RFC 6665 4.1.2.2: a refresh answered with one of these ends the subscription;
# after any other failure the dialog lives on until its expiry.
REFRESH_FAILURE_ENDS = frozenset({404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604})
# A grant too short for resubscribe_delta and min_resubscribe_time is refreshed
# after this fraction of it, so a refresh always goes out before the expiry.
REFRESH_FRACTION = 0.5
# At most this many Contacts of one 3xx are tried, one after the other.
MAX_REDIRECT_CONTACTS = 5



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
    auth_failure: str = ""  # a 401/407/403 the auth layer would not answer: why
    failure_kind: FailureKind | None = None  # code 0: transport, dns or tls


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
