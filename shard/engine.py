"""One shard's subscriptions, SIP transactions and dialogs, without any I/O.

The engine is the glue between the layers: it turns datagrams into transaction
events, NOTIFYs and SUBSCRIBE outcomes into :class:`Subscription` events, and
the state machine's actions into SIP requests and consumer messages. It never
touches a socket or a clock of its own: the driver (``shard/transport.py`` in
the service, plain calls in the tests) gives it a clock, a ``send`` callable
and a ``deliver`` callable, and wakes it at ``next_deadline()``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import B2BParams, SipSettings
from ..metrics.shard import Counter, ShardMetrics
from ..presence.body import decode_body
from ..presence.status import Failure, FailureKind, Status, SubscriptionState
from ..sip import ids
from ..sip.dialog import Dialog, build_initial_with_dialog, next_hop, resolve_uri
from ..sip.headers import (
    parse_delta_seconds,
    parse_event,
    parse_name_addr,
    parse_retry_after,
    parse_subscription_state,
    parse_tag,
    parse_uri,
)
from ..sip.message import Message as SipMessage
from ..sip.message import Request, Response, SipParseError, parse_message
from ..sip.transaction import (
    ClientTransaction,
    Deliver,
    DeliverRequest,
    Event,
    Send,
    ServerTransaction,
    TimedOut,
    TimerSettings,
    TransactionTable,
    TransportError,
    response_bytes,
)
from .ratelimit import TokenBucket
from .subscription import (
    Action,
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
)
from ..sip.timers import TimerQueue

log = logging.getLogger(__name__)

Address = tuple[str, int]
Message = Status | Failure
PACKAGE = "presence"
ACCEPT = "application/pidf+xml"
ALLOW = "NOTIFY, OPTIONS"
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
_ALLOW = (("Allow", ALLOW),)
_SUB_STATE_CACHE = 256  # distinct Subscription-State values remembered
_SUB_HEADERS_CACHE = 64  # distinct Expires values whose SUBSCRIBE headers are kept
# A Subscription-State value's parse: the NotifyInfo for an in-order NOTIFY and
# the one for an out-of-order NOTIFY (frozen, so every NOTIFY with that value
# shares them).
_SubState = tuple[NotifyInfo, NotifyInfo]
_MANDATORY_SET = frozenset(_MANDATORY)


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """The shard socket as written into Via and Contact (always an explicit host:port)."""

    host: str
    port: int

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class _Usage(Subscription):
    """One subscription with its SIP side: its dialog, and what the engine's timer
    queue and gauges know of it.

    The state machine stays free of SIP objects (:class:`Subscription` never
    touches these slots); the engine's fields are slots of the same object
    rather than a second object that points at it, which saves an object and a
    reference per subscription (there may be a million).
    """

    __slots__ = ("armed_at", "counted", "dialog")

    def __init__(
        self,
        sub_id: int,
        record: str,
        subscriber: str,
        params: MachineParams,
        *,
        rng: random.Random | None,
    ) -> None:
        super().__init__(sub_id, record, subscriber, params, rng=rng)
        self.dialog: Dialog | None = None
        self.armed_at: float | None = None
        self.counted: State | None = None  # the state the subscriptions gauge counts it in


class _Pending:
    """What a client transaction was sent for, so its outcome reaches the right place."""

    __slots__ = ("dest", "kind", "txn_no", "usage")

    def __init__(self, usage: _Usage, txn_no: int, dest: Address, kind: str) -> None:
        self.usage = usage
        self.txn_no = txn_no
        self.dest = dest
        self.kind = kind


def _header_lines(raw: str) -> tuple[tuple[str, str], ...]:
    """``additional_presence_headers`` as (name, value) pairs; the config checked the form."""
    out: list[tuple[str, str]] = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        if line.strip():
            name, _, value = line.partition(":")
            out.append((name.strip(), value.strip()))
    return tuple(out)


def _int_header(msg: Response, name: str) -> int | None:
    value = msg.get(name)
    if value is None:
        return None
    try:
        return parse_delta_seconds(value)
    except SipParseError:
        return None  # an invalid value counts as a missing one (the original read garbage)


def _retry_after(msg: Response) -> int | None:
    value = msg.get("Retry-After")
    if value is None:
        return None
    try:
        return parse_retry_after(value).seconds
    except SipParseError:
        return None


def _first_contact(msg: Response) -> tuple[str, ...]:
    for value in msg.get_all("Contact"):
        try:
            return (parse_name_addr(value).uri,)
        except SipParseError:
            continue
    return ()


def machine_params(params: B2BParams, t1: float) -> MachineParams:
    """The state machine's share of the configuration."""
    return MachineParams(
        default_expiration=params.default_expiration,
        on_error_retry_time=params.on_error_retry_time,
        wait_for_term_notify=params.wait_for_term_notify,
        resubscribe_delta=params.resubscribe_delta,
        min_resubscribe_time=params.min_resubscribe_time,
        max_subscribe_delay=params.max_subscribe_delay,
        t1=t1,
    )


class Engine:
    """All subscriptions of one shard.

    ``deliver`` receives one :class:`Status` or :class:`Failure` per event a consumer
    should see, with ``id`` = the engine's subscription id; ``finished`` is told the
    id once the subscription is over and forgotten (after its last delivery).
    """

    def __init__(
        self,
        params: B2BParams,
        sip: SipSettings,
        local: LocalEndpoint,
        *,
        clock: Callable[[], float],
        send: Callable[[bytes, Address], None],
        deliver: Callable[[Message], None],
        metrics: ShardMetrics,
        rng: random.Random | None = None,
        finished: Callable[[int], None] | None = None,
        subscribe_rate: float = 0.0,
    ) -> None:
        self.params = params
        self.sip = sip
        self._machine_params = machine_params(params, sip.t1)
        self.local = local
        self.clock = clock
        self._send = send
        self._deliver = deliver
        self.m = metrics
        self._finished = finished
        # Out-of-dialog SUBSCRIBEs waiting for a token, in arrival order.
        self._limiter = TokenBucket(subscribe_rate) if subscribe_rate > 0 else None
        self._held: dict[int, tuple[_Usage, SendInitial]] = {}
        self.rng = rng or random.Random()
        self.timers = TimerSettings(sip.t1, sip.t2, sip.t4)
        self.table = TransactionTable(self.timers)
        self.queue: TimerQueue[Subscription] = TimerQueue()
        self.usages: dict[int, _Usage] = {}
        # Dialogs by Call-ID alone: ours are 128 random bits, new for every dialog,
        # so the local tag (checked on lookup) need not be part of the key.
        self._by_dialog: dict[str, _Usage] = {}
        self._headers = _header_lines(params.additional_presence_headers)
        self._contact = f"<sip:{local.hostport}>"
        self._proxy = params.presence_outbound_proxy or None
        self._proxy_hop = resolve_uri(self._proxy) if self._proxy else None
        self._states: dict[State, int] = dict.fromkeys(State, 0)
        self._sub_states: dict[str, _SubState] = {}
        self._sub_headers: dict[int, tuple[tuple[str, str], ...]] = {}
        self._bind_metrics()

    # ------------------------------------------------------------------ metrics

    def _bind_metrics(self) -> None:
        m = self.m
        sent = m.sip_requests_sent
        self._m_sent = {
            k: sent.labels("SUBSCRIBE", k)
            for k in ("initial", "refresh", "unsubscribe", "retransmission")
        }
        notify = m.sip_notify_received
        self._m_notify = {k: notify.labels(k) for k in ("active", "pending", "terminated")}
        self._m_notify_other = notify.labels("other")
        self._m_armed = {k: m.timers_armed.labels(k) for k in _timer_kinds()}
        self._m_fired = {k: m.timers_fired.labels(k) for k in _timer_kinds()}
        self._m_parse = {
            k: m.sip_parse_errors.labels(k) for k in m.sip_parse_errors.family.labels[0].values
        }
        self._m_errors = {k: m.errors.labels(k) for k in m.errors.family.labels[0].values}
        self._m_failed = {
            k: m.subscriptions_failed.labels(k)
            for k in m.subscriptions_failed.family.labels[0].values
        }
        term = m.subscriptions_terminated
        self._m_term = {k: term.labels(k) for k in term.family.labels[0].values}
        self._m_states = {
            s: m.subscriptions.labels(s.name.lower()) for s in State
        }
        self._m_retrans_sent = m.sip_retransmissions.labels("sent")
        self._m_retrans_received = m.sip_retransmissions.labels("received")

    def _count(self, table: dict[str, Counter], key: str, fallback: str = "other") -> None:
        child = table.get(key) or table.get(fallback)
        if child is not None:
            child.value += 1

    def _settle_state(self, usage: _Usage) -> None:
        """Move the subscription between state gauges; drop it once finished.

        Safe when re-entered: a send failure can run the machine again from inside
        an action, so the gauge follows what was counted, not the caller's view."""
        after = usage.state
        counted = usage.counted
        if after is counted:
            return
        if counted is not None:
            self._m_states[counted].value -= 1
        if usage.finished:
            usage.counted = None
            self._drop(usage)
        else:
            self._m_states[after].value += 1
            usage.counted = after

    # ------------------------------------------------------------------ consumer API

    def subscribe(
        self, sub_id: int, record: str, subscriber: str, package: str = PACKAGE
    ) -> None:
        """Start a subscription; problems come back through ``deliver`` as a final Failure."""
        problem = self._refusal(sub_id, record, subscriber, package)
        if problem:
            self._count(self._m_failed, "refused")
            self._deliver(Failure(sub_id, FailureKind.REFUSED, detail=problem))
            if self._finished is not None and sub_id not in self.usages:
                self._finished(sub_id)
            return
        sub = usage = _Usage(
            sub_id, record, subscriber, self._machine_params, rng=self.rng
        )
        self.usages[sub_id] = usage
        self._run(usage, sub.state, sub.start(self.clock()))

    def _refusal(self, sub_id: int, record: str, subscriber: str, package: str) -> str:
        if package != PACKAGE:
            return f"event package {package!r} is not handled (only {PACKAGE!r})"
        if not self.params.handle_presence_subscriptions:
            return "presence subscriptions are disabled (handle_presence_subscriptions = 0)"
        if sub_id in self.usages:
            return f"subscription id {sub_id} is already in use"
        for what, uri in (("record", record), ("subscriber", subscriber)):
            try:
                parse_uri(uri)
            except SipParseError as exc:
                return f"{what} is not a SIP URI: {exc}"
        return ""

    def unsubscribe(self, sub_id: int) -> bool:
        """End a subscription; the consumer gets one final TERMINATED status."""
        usage = self.usages.get(sub_id)
        if usage is None:
            return False
        sub = usage
        now = self.clock()
        self._run(usage, sub.state, sub.unsubscribe(now))
        if self._held.pop(sub_id, None) is not None and self.usages.get(sub_id) is usage:
            # Its SUBSCRIBE never left: nothing to wait for, end it as if unanswered.
            self._run(usage, sub.state, sub.on_timeout(now, sub.txn))
        return True

    def refresh(self, sub_id: int) -> bool:
        """Operator's refresh: refresh a dialog now, or end a retry wait now."""
        usage = self.usages.get(sub_id)
        if usage is None:
            return False
        self._run(usage, usage.state, usage.refresh(self.clock()))
        return True

    def reconfigure(self, params: B2BParams) -> None:
        """New [presence_b2b] parameters (SIGHUP): they apply from each subscription's
        next step on; what is already armed or sent stays as it is."""
        self.params = params
        self._machine_params = machine_params(params, self.sip.t1)
        self._headers = _header_lines(params.additional_presence_headers)
        self._proxy = params.presence_outbound_proxy or None
        self._proxy_hop = resolve_uri(self._proxy) if self._proxy else None
        for usage in self.usages.values():
            usage.params = self._machine_params

    def shutdown(self) -> None:
        """Unsubscribe everything (SIGTERM); ``idle`` says when all have ended."""
        for sub_id in list(self.usages):
            self.unsubscribe(sub_id)

    @property
    def idle(self) -> bool:
        return not self.usages

    def __len__(self) -> int:
        return len(self.usages)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self.usages.values())

    def snapshot(self, sub_id: int) -> dict[str, Any] | None:
        usage = self.usages.get(sub_id)
        if usage is None:
            return None
        out: dict[str, Any] = usage.snapshot()
        d = usage.dialog
        out["dialog"] = (
            None
            if d is None
            else {
                "call_id": d.call_id,
                "local_tag": d.local_tag,
                "remote_tag": d.remote_tag,
                "remote_target": d.remote_target,
                "route_set": list(d.route_set),
                "local_cseq": d.local_cseq,
                "remote_cseq": d.remote_cseq,
            }
        )
        return out

    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for usage in self.usages.values():
            name = usage.state.name.lower()
            counts[name] = counts.get(name, 0) + 1
        return counts

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        deadlines = [
            d
            for d in (self.queue.next_deadline(), self.table.next_deadline(), self._release_at())
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def _release_at(self) -> float | None:
        if not self._held or self._limiter is None:
            return None
        return self._limiter.next_token_at(self.clock())

    def _release_held(self, now: float) -> None:
        """Send held out-of-dialog SUBSCRIBEs, oldest first, as tokens allow."""
        limiter = self._limiter
        while self._held and limiter is not None:
            sub_id = next(iter(self._held))
            usage, action = self._held[sub_id]
            if self.usages.get(sub_id) is not usage or usage.txn != action.txn:
                del self._held[sub_id]  # superseded while it waited
                continue
            if not limiter.take(now):
                return
            del self._held[sub_id]
            self._send_initial(usage, action, held=True)

    @property
    def held(self) -> int:
        """Out-of-dialog SUBSCRIBEs waiting for the rate limit."""
        return len(self._held)

    def on_timer(self) -> None:
        """Fire every transaction and subscription timer that is due now."""
        now = self.clock()
        for txn, event in self.table.on_timer(now):
            self._client_event(txn, event, now)
        if self._held:
            self._release_held(now)
        lag = self.m.timer_lag_seconds
        for sub in self.queue.pop_due(now):
            usage = self.usages.get(sub.sub_id)
            if usage is None or usage is not sub:
                continue
            usage.armed_at = None
            if sub.timer_kind is not None:
                self._m_fired[sub.timer_kind].value += 1
            if sub.deadline is not None:
                lag.observe(now - sub.deadline)
            self._run(usage, sub.state, sub.on_timer(now))

    def _sync_timer(self, usage: _Usage) -> None:
        sub = usage
        deadline = sub.deadline
        if deadline is None:
            if usage.armed_at is not None:
                self.queue.cancel(sub)
                usage.armed_at = None
            return
        if deadline != usage.armed_at or sub.timer_seq == 0:
            self.queue.schedule(sub, deadline)
            usage.armed_at = deadline
            if sub.timer_kind is not None:
                self._m_armed[sub.timer_kind].value += 1

    # ------------------------------------------------------------------ datagrams

    def datagram_received(self, data: bytes, addr: Address) -> None:
        now = self.clock()
        try:
            msg = parse_message(data, max_size=self.sip.max_message_size)
        except SipParseError as exc:
            if exc.kind == "empty":
                return  # a CRLF keep-alive (RFC 5626 §4.4.1): not an error
            self._count(self._m_parse, exc.kind)
            self._count(self._m_errors, "parse")
            log.debug("unparseable datagram from %s:%d: %s", addr[0], addr[1], exc)
            return
        if isinstance(msg, Response):
            self._on_response(msg, now)
        else:
            self._on_request(msg, addr, now)

    def _on_response(self, resp: Response, now: float) -> None:
        try:
            txn, events = self.table.receive_response(resp, now)
        except SipParseError as exc:
            self._count(self._m_parse, exc.kind)
            self._count(self._m_errors, "parse")
            return
        if txn is None:
            log.debug("stray response %d dropped", resp.status)
            return
        self.m.response_received(resp.status)
        for event in events:
            self._client_event(txn, event, now)

    def _client_event(self, txn: Any, event: Event, now: float) -> None:
        if isinstance(txn, ServerTransaction):
            return  # server transactions only report Terminated here
        pending: _Pending = txn.context
        if isinstance(event, Send):  # a Retransmit from timer E
            self._m_sent["retransmission"].value += 1
            self._m_retrans_sent.value += 1
            self._transmit(event.data, pending.dest, txn, now)
        elif isinstance(event, Deliver):
            self._on_final(pending, event.response, now)
        elif isinstance(event, TimedOut | TransportError):
            if isinstance(event, TimedOut):
                self.m.sip_transaction_timeouts.value += 1
                self._m_fired["transaction"].value += 1
            self._if_current(pending, lambda sub: sub.on_timeout(now, pending.txn_no))

    def _if_current(self, pending: _Pending, step: Callable[[Subscription], list[Action]]) -> None:
        usage = pending.usage
        if self.usages.get(usage.sub_id) is not usage:
            return  # the subscription is gone; a late outcome changes nothing
        self._run(usage, usage.state, step(usage))

    def _on_final(self, pending: _Pending, resp: Response, now: float) -> None:
        if resp.status < 200:
            return
        usage = pending.usage
        sub = usage
        current = pending.txn_no == sub.txn and self.usages.get(sub.sub_id) is usage
        if current and 200 <= resp.status < 300 and usage.dialog is not None:
            try:
                if pending.kind == "initial":
                    usage.dialog.confirm(resp)
                else:
                    usage.dialog.update_from_response(resp)
            except SipParseError as exc:
                self._count(self._m_parse, exc.kind)
        info = ResponseInfo(
            code=resp.status,
            reason=resp.reason,
            expires=_int_header(resp, "Expires"),
            min_expires=_int_header(resp, "Min-Expires"),
            retry_after=_retry_after(resp),
            contacts=_first_contact(resp) if 300 <= resp.status < 400 else (),
            txn=pending.txn_no,
        )
        self._if_current(pending, lambda s: s.on_response(info, now))

    def _on_request(self, req: Request, addr: Address, now: float) -> None:
        # The message's index of first values (canonical name -> value), built once
        # per message and shared with the transaction and dialog layers' lookups.
        first = req.first_values()
        if not first.keys() >= _MANDATORY_SET:
            missing = [h for h in _MANDATORY if h not in first]
            self._count(self._m_parse, "missing-header")
            self._count(self._m_errors, "parse")
            if "Via" not in missing and "CSeq" not in missing:
                self._reply_stateless(req, 400, f"Missing {missing[0]}", addr)
            return
        try:
            txn, events = self.table.receive_request(req, now)
        except SipParseError as exc:
            self._count(self._m_parse, exc.kind)
            self._count(self._m_errors, "parse")
            self._reply_stateless(req, 400, "Bad Request", addr)
            return
        for event in events:
            if isinstance(event, DeliverRequest):
                code, reason, actions, usage = self._on_new_request(req, first, now)
                self._respond(txn, req, (code, reason), addr, now)
                if usage is not None:
                    content_type = first.get("Content-Type", "")
                    self._run(usage, usage.state, actions, (req.body, content_type))
            elif isinstance(event, Send):  # the stored response, for a retransmission
                self._m_retrans_received.value += 1
                self._transmit(event.data, addr, None, now)

    def _on_new_request(
        self, req: Request, first: Mapping[str, str], now: float
    ) -> tuple[int, str, list[Action], _Usage | None]:
        """Reply code, reason and actions for a new request; ``first`` maps each
        header name to its first value."""
        if req.method == "OPTIONS":
            return 200, "OK", [], None
        if req.method != "NOTIFY":
            return 405, "Method Not Allowed", [], None
        try:
            event_value = first.get("Event", "")
            # "presence" is a valid Event whose package is itself: nothing to parse.
            package = PACKAGE if event_value == PACKAGE else parse_event(event_value).package
            to_tag = parse_tag(first["To"])
            from_tag = parse_tag(first["From"])
        except SipParseError as exc:
            self._count(self._m_parse, exc.kind)
            return 400, f"Bad Request ({exc})", [], None
        usage = self._by_dialog.get(first["Call-ID"])
        if usage is None or usage.dialog is None or usage.dialog.local_tag != (to_tag or ""):
            return 481, "Subscription Does Not Exist", [], None
        dialog = usage.dialog
        if dialog.confirmed and from_tag != dialog.remote_tag:
            return 481, "Subscription Does Not Exist (forked)", [], None
        if package != PACKAGE:
            return 489, "Bad Event", [], None
        state_value = first.get("Subscription-State")
        if state_value is None:
            self._count(self._m_parse, "missing-header")
            return 400, "Missing Subscription-State", [], None
        try:
            in_order_info, late_info = self._subscription_state(state_value)
            if dialog.confirmed:
                in_order = dialog.update_from_request(req)
            else:
                dialog.confirm_from_notify(req)
                in_order = True
        except SipParseError as exc:
            self._count(self._m_parse, exc.kind)
            return 400, f"Bad Request ({exc})", [], None
        child = self._m_notify.get(in_order_info.state)
        (child or self._m_notify_other).value += 1
        code, actions = usage.on_notify(in_order_info if in_order else late_info, now)
        if code == 481:
            return 481, "Subscription Does Not Exist", actions, usage
        return code, "OK", actions, usage

    def _subscription_state(self, value: str) -> _SubState:
        """Subscription-State as the NotifyInfo of an in-order and of an out-of-order
        NOTIFY. Notifiers repeat a handful of values (``active;expires=3600``), so
        parses are kept in a small dict, emptied when full so that a peer cannot
        grow it."""
        cached = self._sub_states.get(value)
        if cached is None:
            s = parse_subscription_state(value)
            cached = (
                NotifyInfo(s.value, s.reason, s.expires, s.retry_after, True),
                NotifyInfo(s.value, s.reason, s.expires, s.retry_after, False),
            )
            if len(self._sub_states) >= _SUB_STATE_CACHE:
                self._sub_states.clear()
            self._sub_states[value] = cached
        return cached

    def _respond(
        self,
        txn: ServerTransaction,
        req: Request,
        reply: tuple[int, str],
        addr: Address,
        now: float,
    ) -> None:
        code, reason = reply
        data = response_bytes(req, code, reason, headers=_ALLOW if code == 405 else ())
        self.m.response_sent(code)
        for event in self.table.respond_data(txn, code, data, now):
            if isinstance(event, Send):
                self._transmit(event.data, addr, None, now)

    def _reply_stateless(self, req: Request, code: int, reason: str, addr: Address) -> None:
        try:
            data = response_bytes(req, code, reason)
        except (SipParseError, ValueError):
            return
        self.m.response_sent(code)
        self._transmit(data, addr, None, self.clock())

    # ------------------------------------------------------------------ actions

    def _run(
        self,
        usage: _Usage,
        before: State,
        actions: list[Action],
        notify: tuple[bytes, str] | None = None,
    ) -> None:
        """Carry out a state machine's actions, then settle its timer and metrics.

        ``notify`` is the (body, Content-Type) of the NOTIFY being handled, if any."""
        sub = usage
        for action in actions:
            if isinstance(action, SendInitial):
                self._send_initial(usage, action)
            elif isinstance(action, SendInDialog):
                self._send_in_dialog(usage, action)
            elif isinstance(action, DropDialog):
                self._forget_dialog(usage)
            elif isinstance(action, EmitStatus):
                self._emit_status(sub, action, notify)
            elif isinstance(action, EmitFailure):
                self._count(self._m_failed, str(action.kind))
                self._deliver(
                    Failure(sub.sub_id, action.kind, action.code, action.detail, action.retry_in)
                )
        if before is State.UNCONFIRMED and sub.state is State.CONFIRMED:
            self.m.subscriptions_established.value += 1
        if not sub.finished:
            self._sync_timer(usage)
        self._settle_state(usage)

    def _emit_status(
        self, sub: Subscription, action: EmitStatus, notify: tuple[bytes, str] | None
    ) -> None:
        if action.state is SubscriptionState.TERMINATED:
            self._count(self._m_term, action.reason or "other")
        body, content_type = notify or (b"", "")
        if not body:
            self._deliver(
                Status(sub.sub_id, action.state, action.reason, content_type=content_type)
            )
            return
        presentity, error = decode_body(content_type, body)
        if error:
            self._count(self._m_errors, "pidf")
        self._deliver(
            Status(
                sub.sub_id,
                action.state,
                action.reason,
                presentity=presentity,
                content_type=content_type,
                body=body,
                error=error,
            )
        )

    def _subscribe_headers(self, expires: int) -> tuple[tuple[str, str], ...]:
        """The SUBSCRIBE's own headers, canonical and checked: made once per Expires
        value (a subscription asks for one, raised only by a 423's Min-Expires)."""
        cached = self._sub_headers.get(expires)
        if cached is None:
            headers = [
                ("Contact", self._contact),
                ("Event", PACKAGE),
                ("Accept", ACCEPT),
                ("Expires", str(expires)),
            ]
            if self.sip.user_agent:
                headers.append(("User-Agent", self.sip.user_agent))
            headers.extend(self._headers)
            cached = tuple(SipMessage(headers).headers)  # canonical names, no CR/LF
            if len(self._sub_headers) >= _SUB_HEADERS_CACHE:
                self._sub_headers.clear()
            self._sub_headers[expires] = cached
        return cached

    def _send_initial(self, usage: _Usage, action: SendInitial, *, held: bool = False) -> None:
        sub = usage
        self._forget_dialog(usage)
        if self._limiter is not None and not held:
            self._held.pop(sub.sub_id, None)
            if self._held or not self._limiter.take(self.clock()):
                self._held[sub.sub_id] = (usage, action)
                return
        target = action.target or sub.record
        branch = ids.new_branch()
        try:
            # The dialog is made from the values the request is built from, so it
            # holds the subscription's own strings (one copy of each, a million
            # subscriptions) and nothing is parsed back.
            req, dialog = build_initial_with_dialog(
                "SUBSCRIBE",
                target,
                from_uri=sub.subscriber,
                from_tag=ids.new_tag(),
                call_id=ids.new_call_id(self.local.host),
                via_sent_by=self.local.hostport,
                branch=branch,
                to_uri=sub.record,
                route=self.params.presence_route,
                headers=self._subscribe_headers(action.expires),
                canonical_headers=True,
            )
            dest = self._proxy_hop or next_hop(req)
        except (SipParseError, ValueError) as exc:
            self._local_failure(usage, action.txn, f"cannot build SUBSCRIBE: {exc}")
            return
        usage.dialog = dialog
        self._by_dialog[dialog.call_id] = usage
        self._m_sent["initial"].value += 1
        self._start(usage, req, dest, action.txn, "initial", key=(branch, "SUBSCRIBE"))

    def _send_in_dialog(self, usage: _Usage, action: SendInDialog) -> None:
        dialog = usage.dialog
        if dialog is None:
            self._local_failure(usage, action.txn, "no dialog to send the SUBSCRIBE in")
            return
        req = dialog.build_request(
            "SUBSCRIBE",
            self._subscribe_headers(action.expires),
            via_sent_by=self.local.hostport,
            branch=ids.new_branch(),
        )
        try:
            dest = next_hop(dialog)
        except (SipParseError, ValueError) as exc:
            self._local_failure(usage, action.txn, f"cannot route in-dialog SUBSCRIBE: {exc}")
            return
        kind = "unsubscribe" if action.expires == 0 else "refresh"
        self._m_sent[kind].value += 1
        self._start(usage, req, dest, action.txn, kind)

    def _start(
        self,
        usage: _Usage,
        req: Request,
        dest: Address,
        txn_no: int,
        kind: str,
        *,
        key: tuple[str, str] | None = None,
    ) -> None:
        now = self.clock()
        pending = _Pending(usage, txn_no, dest, kind)
        txn, events = self.table.start_client(req, now, context=pending, key=key)
        self._m_armed["transaction"].value += 1
        for event in events:
            if isinstance(event, Send):
                self._transmit(event.data, dest, txn, now)

    def _transmit(
        self, data: bytes, dest: Address, txn: ClientTransaction | None, now: float
    ) -> None:
        try:
            self._send(data, dest)
        except OSError as exc:
            self._count(self._m_errors, "transport")
            log.warning("send to %s:%d failed: %s", dest[0], dest[1], exc)
            if txn is not None:
                for event in self.table.transport_error(txn, now):
                    self._client_event(txn, event, now)

    def _local_failure(self, usage: _Usage, txn_no: int, detail: str) -> None:
        """A request that could not even be built counts as sent and timed out."""
        self._count(self._m_errors, "transport")
        log.warning("subscription %d: %s", usage.sub_id, detail)
        sub = usage
        self._run(usage, sub.state, sub.on_timeout(self.clock(), txn_no))

    def _forget_dialog(self, usage: _Usage) -> None:
        d = usage.dialog
        if d is not None:
            if self._by_dialog.get(d.call_id) is usage:
                del self._by_dialog[d.call_id]
            usage.dialog = None

    def _drop(self, usage: _Usage) -> None:
        sub = usage
        self._forget_dialog(usage)
        self._held.pop(sub.sub_id, None)
        if usage.armed_at is not None:
            self.queue.cancel(sub)
            usage.armed_at = None
        if self.usages.get(sub.sub_id) is usage:
            del self.usages[sub.sub_id]
            if self._finished is not None:
                self._finished(sub.sub_id)


def _timer_kinds() -> tuple[str, ...]:
    return ("start-delay", "refresh", "retry", "term-wait", "no-notify", "transaction")
