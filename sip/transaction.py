"""Non-INVITE client transactions (RFC 3261 §17.1.2), sans-I/O.

A subscriber needs no server transactions: it answers a NOTIFY from the dialog
it belongs to (a retransmission repeats the dialog's last CSeq and gets the same
answer) and every other request statelessly.

Transactions never touch a socket or a clock: the caller passes `now` and gets back
a list of events to act on (send these bytes, hand this response to the TU, the
transaction timed out or ended). The table keeps every live transaction; their
deadlines go into a :class:`TimerQueue` that the engine shares with its subscription
timers, so one heap and one I/O timer serve the whole shard.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .headers import parse_cseq, parse_name_addr, parse_tag, parse_via
from .message import Request, Response, SipParseError, canonical_name, split_list
from .timers import TimerQueue

__all__ = [
    "ClientTransaction",
    "Deliver",
    "Event",
    "Retransmit",
    "Send",
    "Terminated",
    "TimedOut",
    "TimerSettings",
    "TransactionState",
    "TransactionTable",
    "TransportError",
    "client_key",
    "make_response",
    "reason_phrase",
    "response_bytes",
    "response_key",
]


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """RFC 3261 §17.1.1.1 timer values in seconds; shorter T1 speeds up tests and LANs."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("timers need 0 < T1 <= T2")
        if self.t4 < 0:
            raise ValueError("T4 must not be negative")

    @property
    def timeout(self) -> float:
        """Timers F and J: 64*T1."""
        return 64 * self.t1


DEFAULT_TIMERS = TimerSettings()


class TransactionState(enum.Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write `data` to the transaction's peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Retransmit(Send):
    """A Send caused by a timer or a retransmitted request; counted apart in metrics."""


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand this response to the transaction user (each final response once)."""

    response: Response


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer F fired: the TU should act as on a 408 (RFC 3261 §8.1.3.1)."""


@dataclass(frozen=True, slots=True)
class TransportError:
    """The transport reported a failure; the TU should act as on a 503."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; always the last event it reports."""


Event = Send | Deliver | TimedOut | TransportError | Terminated

_TERMINATED_EVENTS: list[Event] = [Terminated()]


# --- keys ---------------------------------------------------------------------------


def _top_via(msg: Request | Response) -> str:
    value = msg.get("Via")
    if value is None:
        raise SipParseError("missing-header", "no Via header")
    entries = split_list(value)
    if not entries:
        raise SipParseError("header", "empty Via header")
    return entries[0]


def _cseq(msg: Request | Response) -> tuple[int, str]:
    value = msg.get("CSeq")
    if value is None:
        raise SipParseError("missing-header", "no CSeq header")
    cseq = parse_cseq(value)
    return cseq.number, cseq.method


def client_key(request: Request) -> tuple[str, str]:
    """(branch, method) of a request we send (RFC 3261 §17.1.3)."""
    branch = parse_via(_top_via(request)).branch
    if not branch:
        raise ValueError("a client transaction needs a Via branch")
    return branch, request.method


def response_key(response: Response) -> tuple[str, str]:
    """(branch, CSeq method) of a response, to find its client transaction."""
    return parse_via(_top_via(response)).branch or "", _cseq(response)[1]


# --- transactions -------------------------------------------------------------------


class ClientTransaction:
    """Non-INVITE client transaction (RFC 3261 §17.1.2)."""

    __slots__ = (
        "_e",
        "_entry_at",
        "_f",
        "_interval",
        "_k",
        "context",
        "data",
        "delivery",
        "key",
        "last_response",
        "reliable",
        "request",
        "state",
        "timer_seq",
        "timers",
    )

    def __init__(
        self,
        request: Request,
        *,
        timers: TimerSettings = DEFAULT_TIMERS,
        reliable: bool = False,
        context: Any = None,
        key: tuple[str, str] | None = None,
    ) -> None:
        self.request: Request | None = request
        # A caller that built the request passes its (branch, method) key.
        self.key = client_key(request) if key is None else key
        self.data = request.to_bytes()
        self.timers = timers
        self.reliable = reliable
        #: Opaque state of the network layer below (which target of a name it went
        #: to); it lives and dies with the transaction.
        self.delivery: object = None
        #: Opaque owner data for the TU (for example the subscription this serves).
        self.context = context
        self.state = TransactionState.TRYING
        self.last_response: Response | None = None
        self._interval = timers.t1
        self._e: float | None = None
        self._f: float | None = None
        self._k: float | None = None
        #: Sequence number (0: none) and deadline of its live entry in the timer queue.
        self.timer_seq = 0
        self._entry_at = 0.0

    def start(self, now: float) -> list[Event]:
        """Send the request and arm timers E (unreliable only) and F."""
        if self._f is not None:
            raise RuntimeError("transaction already started")
        self._f = now + self.timers.timeout
        if not self.reliable:
            self._e = now + self._interval
        return [Send(self.data)]

    def receive(self, response: Response, now: float) -> list[Event]:
        """A response matched to this transaction; retransmitted finals are absorbed."""
        if self.state is TransactionState.TRYING or self.state is TransactionState.PROCEEDING:
            if response.status < 200:
                self.state = TransactionState.PROCEEDING
                return [Deliver(response)]
            self.last_response = response
            self._e = self._f = None
            if self.reliable:
                self.state = TransactionState.TERMINATED
                return [Deliver(response), Terminated()]
            self.state = TransactionState.COMPLETED
            self._k = now + self.timers.t4
            return [Deliver(response)]
        return []

    def forget_messages(self) -> None:
        """Drop the request, its bytes and the final response: a completed
        transaction only absorbs retransmitted responses until Timer K."""
        self.request = self.last_response = None
        self.data = b""

    def on_timer(self, now: float) -> list[Event]:
        """Fire whatever timer is due at `now`: F before E, then K."""
        state = self.state
        if state is TransactionState.TRYING or state is TransactionState.PROCEEDING:
            if self._f is not None and now >= self._f:
                self._terminate()
                return [TimedOut(), Terminated()]
            if self._e is not None and now >= self._e:
                if state is TransactionState.TRYING:
                    self._interval = min(2 * self._interval, self.timers.t2)
                else:
                    self._interval = self.timers.t2
                self._e = now + self._interval
                return [Retransmit(self.data)]
        elif state is TransactionState.COMPLETED and self._k is not None and now >= self._k:
            self._terminate()
            return list(_TERMINATED_EVENTS)
        return []

    def on_transport_error(self, now: float) -> list[Event]:
        if self.state is TransactionState.TERMINATED:
            return []
        self._terminate()
        return [TransportError(), Terminated()]

    def next_deadline(self) -> float | None:
        state = self.state
        if state is TransactionState.TRYING or state is TransactionState.PROCEEDING:
            if self._e is None:
                return self._f
            if self._f is None:
                return self._e
            return min(self._e, self._f)
        if state is TransactionState.COMPLETED:
            return self._k
        return None

    def _terminate(self) -> None:
        self.state = TransactionState.TERMINATED
        self._e = self._f = self._k = None

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.key} {self.state.value}>"


_SHRINK_MIN = 1024  # smaller dicts are left alone


class TransactionTable:
    """Every live transaction of one transport, and their deadlines.

    Lookups are dict hits; deadlines live in a :class:`TimerQueue` (one heap with
    lazy deletion, each transaction remembers which entry is current), its own or
    one shared with the caller's other timers.
    A dict does not shrink when emptied, so one that falls to a quarter of its
    peak (after a burst) is copied into a smaller one. A completed transaction
    keeps no parsed messages, nothing but its key for Timer K.
    """

    def __init__(
        self,
        timers: TimerSettings = DEFAULT_TIMERS,
        *,
        reliable: bool = False,
        queue: TimerQueue[Any] | None = None,
    ):
        self.timers = timers
        self.reliable = reliable
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._clients_peak = 0
        # Shared with the engine's subscription timers when it passes its own.
        self.queue: TimerQueue[Any] = TimerQueue() if queue is None else queue

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def clients(self) -> Iterable[ClientTransaction]:
        return self._clients.values()

    def start_client(
        self,
        request: Request,
        now: float,
        *,
        context: Any = None,
        key: tuple[str, str] | None = None,
    ) -> tuple[ClientTransaction, list[Event]]:
        """Create and start a client transaction for `request` (already complete).
        ``key`` is its (Via branch, method) when the caller knows it, else it is parsed."""
        txn = ClientTransaction(
            request, timers=self.timers, reliable=self.reliable, context=context, key=key
        )
        if txn.key in self._clients:
            raise ValueError(f"branch {txn.key[0]!r} already in use")
        events = txn.start(now)
        self._clients[txn.key] = txn
        self._clients_peak = max(self._clients_peak, len(self._clients))
        self._after(txn)
        return txn, events

    def receive_response(
        self, response: Response, now: float
    ) -> tuple[ClientTransaction | None, list[Event]]:
        """Match a response; (None, []) means a stray one the caller may count and drop."""
        txn = self._clients.get(response_key(response))
        if txn is None:
            return None, []
        events = txn.receive(response, now)
        if txn.state is TransactionState.COMPLETED:
            txn.forget_messages()  # Timer K needs only the key
        self._after(txn)
        return txn, events

    def transport_error(self, txn: ClientTransaction, now: float) -> list[Event]:
        events = txn.on_transport_error(now)
        self._after(txn)
        return events

    def next_deadline(self) -> float | None:
        """When on_timer should next be called, or None if no timer is armed."""
        return self.queue.next_deadline()

    def on_timer(self, now: float) -> list[tuple[ClientTransaction, Event]]:
        """Fire every timer due at `now`; events come paired with their transaction.

        Only for a table with a queue of its own: with a shared queue, its owner
        pops the due entries and hands each transaction to :meth:`fire`."""
        out: list[tuple[ClientTransaction, Event]] = []
        for txn in self.queue.pop_due(now):
            out.extend(self.fire(txn, now))
        return out

    def fire(self, txn: ClientTransaction, now: float) -> list[tuple[ClientTransaction, Event]]:
        """Run one transaction's due timer (its queue entry was just popped)."""
        events = txn.on_timer(now)
        self._after(txn)
        return [(txn, ev) for ev in events]

    def _after(self, txn: ClientTransaction) -> None:
        """Drop a terminated transaction, or re-arm its current deadline."""
        if txn.state is TransactionState.TERMINATED:
            self.queue.cancel(txn)
            clients = self._clients
            if clients.get(txn.key) is txn:
                del clients[txn.key]
                if self._clients_peak > _SHRINK_MIN and len(clients) < self._clients_peak // 4:
                    self._clients = dict(clients)
                    self._clients_peak = len(clients)
            return
        deadline = txn.next_deadline()
        if txn.timer_seq != 0 and txn._entry_at == deadline:
            return  # the current entry stays valid: the deadline did not move
        if deadline is None:
            self.queue.cancel(txn)
            return
        self.queue.schedule(txn, deadline)
        txn._entry_at = deadline


# --- responses ----------------------------------------------------------------------

_REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    489: "Bad Event",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    513: "Message Too Large",
}
_CLASS_REASONS = {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Global Failure")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    copy_record_route: bool = False,
) -> Response:
    """A response to `request` as RFC 3261 §8.2.6 builds it.

    Via (all, in order), From, To, Call-ID and CSeq are copied; `to_tag` is added to
    To unless To already has a tag or this is a 100. `copy_record_route` is for a
    2xx to a dialog-creating request (§12.1.1).
    """
    resp = Response(status, reason if reason is not None else reason_phrase(status))
    out = resp.headers
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            out.append((name, value))
        elif name == "To":
            tagged = value
            if to_tag is not None and status != 100 and parse_name_addr(value).tag is None:
                tagged = f"{value};tag={to_tag}"
            out.append((name, tagged))
        elif (name == "Timestamp" and status == 100) or (
            name == "Record-Route" and copy_record_route
        ):
            out.append((name, value))
    for name, value in headers:
        resp.add(name, value)
    resp.body = body
    return resp


_COPIED: frozenset[str] = frozenset(("Via", "From", "To", "Call-ID", "CSeq"))


def response_bytes(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
    to_tag: str | None = None,
    source: tuple[str, int] | None = None,
) -> bytes:
    """``make_response(request, status, reason, headers=headers).to_bytes()`` without
    building the Response: the header lines are copied as they are.

    ``to_tag`` is added to a To without a tag (a final response to an
    out-of-dialog request, RFC 3261 §8.2.6.2); inside a dialog the To already
    has ours. ``source`` is the request's (address, port): the top Via gets
    ``received`` and a bare ``rport`` its value (RFC 3261 §18.2.1, RFC 3581 §4)."""
    lines = [f"SIP/2.0 {status} {reason if reason is not None else reason_phrase(status)}"]
    top_via = source is not None
    for name, value in request.headers:
        if name in _COPIED or (name == "Timestamp" and status == 100):
            if top_via and name == "Via":
                assert source is not None
                lines.append(f"Via: {via_received(value, source)}")
                top_via = False
            elif to_tag is not None and name == "To" and _untagged(value):
                lines.append(f"To: {value};tag={to_tag}")
            else:
                lines.append(f"{name}: {value}")
    for name, value in headers:
        canon = canonical_name(name)
        if canon == "Content-Length":
            continue
        if "\r" in value or "\n" in value:
            raise ValueError("header values must not contain CR or LF")
        lines.append(f"{canon}: {value}")
    lines.append("Content-Length: 0\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


def _untagged(to: str) -> bool:
    """A To without a tag; one that does not parse is left as it came."""
    try:
        return parse_tag(to) is None
    except SipParseError:
        return False


def via_received(value: str, source: tuple[str, int]) -> str:
    """The top Via of a request from ``source`` as its response carries it:
    ``received`` when the sent-by host is not the source address, or when the
    client asked for ``rport`` (whose empty value is then filled in). The usual
    Via (sent-by = source, no rport) is returned as it is, without a parse."""
    host, port = source
    if "rport" not in value:
        at = value.find(" ")
        if at > 0 and value.startswith(host, at + 1):
            end = value[at + 1 + len(host) : at + 2 + len(host)]
            if end in ("", ":", ";", " "):
                return value  # first entry's sent-by is the source host
    first, comma, rest = value.partition(",")
    head, _, params_text = first.partition(";")
    params = [p for p in params_text.split(";") if p.strip()] if params_text else []
    out: list[str] = []
    add_received = parse_via(first).host.strip("[]") != host
    for p in params:
        key = p.strip().partition("=")[0].strip().lower()
        if key == "received":
            continue  # replaced below
        if key == "rport" and "=" not in p:
            out.append(f"rport={port}")
            add_received = True
            continue
        out.append(p.strip())
    if add_received:
        out.append(f"received={host}")
    amended = head.rstrip() + "".join(f";{p}" for p in out)
    return amended + comma + rest if comma else amended
