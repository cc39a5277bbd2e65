"""One shard's subscriptions, SIP transactions and dialogs, without any I/O.

The engine joins the layers (DUM style): :class:`DialogSet` matches and
validates NOTIFYs, :class:`Requester` builds SUBSCRIBEs and names their
destinations, :class:`HoldQueue` rate-limits new dialogs at a pace that
adapts to load (:class:`AdaptivePace`), an
:class:`EngineObserver` counts, and each :class:`Usage` is a subscription
state machine with its dialog. One :class:`TimerQueue` holds every
transaction and subscription deadline.

Inputs are method calls (``subscribe``, ``unsubscribe``, ``refresh``,
``datagram_received``, ``on_timer``, ``send_failed``); none performs I/O or
calls back. What they ask for is queued and the driver takes it with
:meth:`Engine.take`: datagrams with their :class:`Destination`, messages for
consumers, finished subscription ids and the next deadline. Nothing escapes an
input: an unexpected exception in one subscription's step becomes an
``internal`` Failure of that subscription and the rest of the input runs.

With ``journal=True`` (a dialog store is configured) the engine also notes
which subscriptions changed and how (``changes``), for shard/persistence.py to
write, and takes stored dialogs back with :meth:`Engine.restore`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..config import B2BParams, SipSettings
from ..id_map import IdMap
from ..metrics.catalog import TRANSACTION_TIMER, state_label
from ..packed_map import PackedIdMap
from ..presence.body import decode, decode_body
from ..presence.listing import is_list_body, resource_status
from ..presence.packages import package_problem
from ..presence.resourcelist import ListTracker
from ..presence.status import Failure, FailureKind, Status, StatusMessage, SubscriptionState
from ..sip import ids
from ..sip.dialog import Dialog
from ..sip.headers import (
    parse_tag,
    parse_uri,
    parse_via,
)
from ..sip.message import Request, Response, SipParseError, parse_message
from ..sip.timers import TimerQueue
from ..sip.transaction import (
    ClientTransaction,
    Deliver,
    Event,
    Send,
    TimedOut,
    TimerSettings,
    TransactionTable,
    TransportError,
    response_bytes,
    via_received,
)
from ..store.record import CSEQ_BLOCK, Change, DialogRecord
from .auth import CredentialLookup
from .auth_layer import AUTH_CODES, AuthLayer, next_attempt
from .destination import Destination, Transport
from .dialogset import PACKAGE, DialogSet
from .observer import EngineObserver
from .output import Datagram, Output, valid_text
from .pace import LAG_LIMIT, AdaptivePace
from .ratelimit import HoldQueue
from .requester import ACCEPT, LocalEndpoint, Requester, udp
from .resolver import SipTarget
from .responseinfo import response_info
from .routing import Hop
from .subscription import (
    Action,
    DropDialog,
    EmitFailure,
    EmitStatus,
    MachineParams,
    SendInDialog,
    SendInitial,
    State,
)
from .usage import RestingUsage, Usage, packed_deadline, rest

__all__ = ["PACKAGE", "Engine", "LocalEndpoint", "machine_params"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
Step = Callable[[Usage], list[Action]]
ALLOW = "NOTIFY, OPTIONS"
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
_MANDATORY_SET = frozenset(_MANDATORY)
_ALLOW = (("Allow", ALLOW),)
_OPTIONS_200 = (("Allow", ALLOW), ("Accept", ACCEPT))
_DEST_CACHE = 1024  # source addresses whose Destination is kept for responses
#: Subscriptions put to rest in one timer turn at most: a wave of them (the
#: set-up of many, 40 s on) must not hold up the loop. 2 000 stalled a shard
#: for tens of ms and cut a concurrent set-up's rate by a fifth.
REST_BATCH = 256
#: Seconds the oldest awake subscription may wait past its time to rest, so
#: that they are put to rest in batches, not one timer turn each.
REST_SLACK = 1.0
#: NOTIFYs a loading shard keeps for dialogs its store has not given back yet.
HELD_NOTIFIES_MAX = 10_000


class _Pending:
    """What a client transaction was sent for, so its outcome reaches the right place
    (and, for a challenge, what to send again)."""

    __slots__ = (
        "dest", "error", "error_kind", "failovers", "kind", "request", "txn_no", "usage"
    )

    def __init__(
        self, usage: Usage, txn_no: int, dest: Hop, kind: str, request: Request
    ) -> None:
        self.usage = usage
        self.txn_no = txn_no
        self.dest = dest
        self.kind = kind
        #: Until the final response: a challenge or a 503 sends it again. Dropped
        #: then, not at Timer K (5 s later): at 2 000 set-ups/s that is 10 000
        #: parsed requests held for nothing, and freed cold.
        self.request: Request | None = request
        self.error = ""  # why the transport failed, once it has
        self.error_kind = FailureKind.TRANSPORT  # or DNS, TLS
        self.failovers = 0  # targets of a name left after a 503 (RFC 3263 §4.3)


_SUPPORTED_EXTENSIONS = frozenset(("eventlist",))
#: Bytes a stateless answer may have beyond its request's (see _reply_stateless).
_STATELESS_SLACK = 128
#: Targets a request moves on to after 503s before the last 503 is its answer.
_MAX_FAILOVERS = 4
#: Which of two changes of one dialog the journal keeps (the more pressing).
_URGENCY = {
    Change.ROUTINE: 0, Change.REFRESHED: 1, Change.CONFIRMED: 2, Change.ROUTE: 3,
    Change.CREATED: 4, Change.TERMINATED: 5,
}


def _unsupported(values: list[str]) -> list[str]:
    """The option tags of Require headers that we do not support."""
    return [
        tag
        for value in values
        for tag in (t.strip() for t in value.split(","))
        if tag and tag.lower() not in _SUPPORTED_EXTENSIONS
    ]


def _release(usage: Usage) -> None:
    """Let go of what an ended subscription held. Its timer entry stays in the
    heap, stale, until it is popped or the heap is compacted (up to twice the
    live entries): it then pins the small Usage only, not its dialog, route
    set, list tracker and credentials. With 100 subscriptions ending a second
    and refreshes an hour away, that is ~130 000 ended ones waiting for the
    next compaction."""
    usage.dialog = None
    usage.lists = None
    usage.auth = None


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
    """All subscriptions of one shard; see the module docstring for the contract."""

    def __init__(
        self,
        params: B2BParams,
        sip: SipSettings,
        local: LocalEndpoint,
        *,
        clock: Callable[[], float],
        observer: EngineObserver | None = None,
        rng: random.Random | None = None,
        subscribe_rate: float = 0.0,
        credentials: CredentialLookup | None = None,
        journal: bool = False,
    ) -> None:
        self.params = params
        self.sip = sip
        self._machine_params = machine_params(params, sip.t1)
        self.local = local
        self.clock = clock
        self.obs = observer if observer is not None else EngineObserver()
        self.rng = rng or random.Random()
        self.hold: HoldQueue[tuple[Usage, SendInitial]] | None = (
            HoldQueue(subscribe_rate) if subscribe_rate > 0 else None
        )
        #: The rate of ``hold`` adapts to load under the configured ceiling.
        self.pace = AdaptivePace(subscribe_rate) if subscribe_rate > 0 else None
        if self.pace is not None:
            self.obs.pace(self.pace.rate)
        self.queue: TimerQueue[Any] = TimerQueue()
        self.table = TransactionTable(TimerSettings(sip.t1, sip.t2, sip.t4), queue=self.queue)
        #: Every subscription, awake (a :class:`Usage`) or at rest, by its id
        #: (the fan-out numbers them in order, so an IdMap's pages suit them).
        self.usages: IdMap[Usage | RestingUsage] = IdMap()
        #: The awake ones, least recently touched first: who may rest next.
        self._awake: dict[int, Usage] = {}
        #: When the oldest awake one may rest, or a little earlier (None: none
        #: awake). Kept, not looked up: the front of a dict that is popped and
        #: appended at every event lies behind a run of deleted slots.
        self._rest_at: float | None = None
        #: The most awake since the awake dict was last rebuilt: a dict keeps
        #: the table of its largest size, so after a set-up's wave has gone to
        #: rest it is copied into one of the size it has now.
        self._awake_peak = 0
        self._resting = 0
        #: The packed data of each resting subscription, by its id (:func:`rest`).
        self._rest_data = PackedIdMap()
        #: Quiet for this long, a subscription rests. Nothing in flight is
        #: needed (``rest`` refuses a usage with an outstanding request or
        #: Timer N); past Timer K (T4) the finished SUBSCRIBE's transaction no
        #: longer holds the usage, so resting frees it. Every second longer
        #: keeps a set-up's or a refresh wave's last seconds of subscriptions
        #: whole, and their memory stays scattered among the resting ones.
        self.rest_after = sip.t4 + 1.0
        self.dialogs = DialogSet(self.obs, self.usages, self._wake, self._rest_data)
        self.requester = Requester(params, sip, local)
        self.auth = AuthLayer(credentials, self.obs)
        self._hostport = local.hostport
        self._via_prefix = f"SIP/2.0/UDP {local.hostport}"
        self._dests: dict[Address, Destination] = {}
        self._inbound = Transport.UDP  # the transport of the message being handled
        self._out = Output()
        # Machine events that an action asked for (a request that could not be
        # built): run after the current one, never from inside it.
        self._later: list[tuple[Usage, Step]] = []
        #: With ``journal``: subscriptions whose dialog changed since the last
        #: :meth:`take_changes`, each with its most pressing change, for the
        #: dialog store. None: nothing is kept (no store).
        self.changes: dict[int, tuple[Usage | RestingUsage, Change]] | None = (
            {} if journal else None
        )
        #: While a restarted shard's store loads its rows: NOTIFYs that matched no
        #: dialog yet, to be matched once the rows are back (None: not loading).
        self._held_notifies: list[tuple[Request, Address, Transport, int]] | None = None

    # ------------------------------------------------------------------ output

    def take(self) -> Output:
        """Everything queued since the last call, and the next deadline."""
        out = self._out
        self._out = Output()
        out.deadline = self.next_deadline()
        return out

    def next_deadline(self) -> float | None:
        deadline = self.queue.next_deadline()
        rest_at = self._rest_at
        if rest_at is not None and (deadline is None or rest_at < deadline):
            deadline = rest_at
        if self.hold is not None and len(self.hold):
            release = self.hold.next_release(self.clock())
            if release is not None and (deadline is None or release < deadline):
                return release
        return deadline

    def _emit(self, msg: StatusMessage) -> None:
        self._out.messages.append(msg)

    # ------------------------------------------------------------------ consumer API

    def subscribe(
        self, sub_id: int, record: str, subscriber: str, package: str = PACKAGE
    ) -> None:
        """Start a subscription; a refusal comes out as a final Failure."""
        problem = self._refusal(sub_id, record, subscriber, package)
        if problem:
            self.obs.failed(FailureKind.REFUSED)
            self._emit(Failure(sub_id, FailureKind.REFUSED, detail=problem))
            if sub_id not in self.usages:
                self._out.finished.append(sub_id)
            return
        usage = Usage(
            sub_id, record, subscriber, self._machine_params, rng=self.rng, package=package
        )
        self.usages[sub_id] = usage
        now = self.clock()
        self._event(usage, lambda u: u.start(now))

    def _refusal(self, sub_id: int, record: str, subscriber: str, package: str) -> str:
        problem = package_problem(package)
        if problem:
            return problem
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
        usage = self.usage(sub_id)
        if usage is None:
            return False
        now = self.clock()
        self._event(usage, lambda u: u.unsubscribe(now))
        if (
            self.hold is not None
            and self.hold.discard(sub_id) is not None
            and self.usages.get(sub_id) is usage
        ):
            # Its SUBSCRIBE never left: nothing to wait for, end it as if unanswered.
            self._event(usage, lambda u: u.on_timeout(now, u.txn))
        return True

    def refresh(self, sub_id: int) -> bool:
        """Operator's refresh: refresh a dialog now, or end a retry wait now."""
        usage = self.usage(sub_id)
        if usage is None:
            return False
        now = self.clock()
        self._event(usage, lambda u: u.refresh(now))
        return True

    def reconfigure(self, params: B2BParams) -> None:
        """New [presence_b2b] parameters (SIGHUP): they apply from each subscription's
        next step on; what is already armed or sent stays as it is."""
        self.params = params
        self._machine_params = machine_params(params, self.sip.t1)
        self.requester.configure(params)
        for usage in self.usages.values():
            if isinstance(usage, Usage):  # one at rest takes them when it wakes
                usage.params = self._machine_params

    def set_credentials(self, credentials: CredentialLookup | None) -> None:
        """New credentials (SIGHUP): the next challenge is answered with them."""
        self.auth.configure(credentials, list(self.usages.values()))

    def shutdown(self) -> None:
        """Unsubscribe everything (SIGTERM); ``idle`` says when all have ended."""
        for sub_id in list(self.usages):
            self.unsubscribe(sub_id)

    @property
    def idle(self) -> bool:
        return not self.usages

    # ------------------------------------------------------------------ the dialog store

    def restore(
        self, sub_id: int, record: DialogRecord, refresh_at: float, expires_at: float
    ) -> bool:
        """Take back a confirmed dialog an earlier process (or another host) kept
        in the store: no SIP now; the next refresh goes out in that dialog at
        ``refresh_at`` (engine clock), with this shard's Contact. False, and
        nothing kept, for a record that cannot make a dialog."""
        if sub_id in self.usages or record.remote_tag is None:
            return False
        if self._refusal(sub_id, record.record, record.subscriber, record.package):
            return False
        dialog = Dialog(
            call_id=record.call_id,
            local_tag=record.local_tag,
            local_uri=record.subscriber,
            remote_uri=record.record,
            remote_target=record.remote_target,
            route_set=list(record.route_set),
            local_cseq=record.local_cseq,
            remote_tag=record.remote_tag,
        )
        dialog.confirmed = True
        usage = Usage(
            sub_id, record.record, record.subscriber, self._machine_params,
            rng=self.rng, package=record.package,
        )
        usage.dialog = dialog
        usage.cseq_high = record.cseq_high
        usage.resume(self.clock(), refresh_at, expires_at)
        self.usages[sub_id] = usage
        self.dialogs.add(usage)
        self._settle(usage, State.CONFIRMED)  # counted as a state, not as established
        return True

    def abandon(self, sub_id: int) -> bool:
        """Forget a subscription without a word to anyone: no SIP, no status, no
        finished id (its dialog now belongs to another host)."""
        if self.usage(sub_id) is None:
            return False
        usage = self.usages.pop(sub_id)
        assert isinstance(usage, Usage)  # usage() woke it
        self._awake.pop(sub_id, None)
        if usage.counted is not None:
            self.obs.state_changed(usage.counted, None)
        self.dialogs.forget(usage)
        if self.hold is not None:
            self.hold.discard(sub_id)
        if usage.armed_at is not None or usage.timer_seq:
            self.queue.cancel(usage)
        if self.changes is not None:
            self.changes.pop(sub_id, None)
        _release(usage)
        return True

    def take_changes(self) -> dict[int, tuple[Usage | RestingUsage, Change]]:
        """The journal since the last call (empty without ``journal``)."""
        changes = self.changes
        if not changes:
            return {}
        self.changes = {}
        return changes

    def _note(self, usage: Usage | RestingUsage, change: Change) -> None:
        changes = self.changes
        if changes is None:
            return
        noted = changes.get(usage.sub_id)
        if noted is None or _URGENCY[change] > _URGENCY[noted[1]]:
            changes[usage.sub_id] = (usage, change)

    @property
    def held(self) -> int:
        """Out-of-dialog SUBSCRIBEs waiting for the rate limit."""
        return 0 if self.hold is None else len(self.hold)

    def __len__(self) -> int:
        return len(self.usages)

    def __iter__(self) -> Iterator[Usage | RestingUsage]:
        return iter(self.usages.values())

    def usage(self, sub_id: int) -> Usage | None:
        """The subscription ``sub_id``, woken if it was at rest (None: there is
        none, or it could not wake and has just failed)."""
        found = self.usages.get(sub_id)
        if found is None or isinstance(found, Usage):
            return found
        return self._wake(found)

    def peek(self, sub_id: int) -> Usage | None:
        """The subscription ``sub_id`` to read, without waking it: one at rest
        is unpacked into a copy that does not take its place (the store catching
        up with every dialog must not wake them all). None: there is none, or it
        cannot be unpacked (it fails when it next wakes)."""
        found = self.usages.get(sub_id)
        if found is None or isinstance(found, Usage):
            return found
        try:
            return found.wake(self._packed(found), self._machine_params, self.rng)
        except Exception as exc:
            self._unowned_error("peek", exc)
            return None

    def state_of(self, sub_id: int) -> State | None:
        """The state of ``sub_id``, without waking it: an operator's ``list``
        of a million must not wake a million."""
        found = self.usages.get(sub_id)
        return None if found is None else found.state

    @property
    def resting(self) -> int:
        """Subscriptions at rest."""
        return self._resting

    def snapshot(self, sub_id: int) -> dict[str, Any] | None:
        usage = self.usage(sub_id)
        if usage is None:
            return None
        out: dict[str, Any] = usage.snapshot()
        out["package"] = usage.package
        out["credential"] = (
            None
            if usage.auth is None
            else {"subscriber": usage.subscriber, "realms": usage.auth.realms()}
        )
        d = usage.dialog
        out["dialog"] = (
            None
            if d is None
            else {
                "call_id": d.call_id,
                "local_tag": d.local_tag,
                "remote_tag": d.remote_tag,
                "remote_target": d.remote_target,
                "route_set": d.route_set,
                "local_cseq": d.local_cseq,
                "remote_cseq": d.remote_cseq,
            }
        )
        return out

    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for usage in self.usages.values():
            name = state_label(usage.state)
            counts[name] = counts.get(name, 0) + 1
        return counts

    # ------------------------------------------------------------------ timers

    def on_timer(self) -> None:
        """Fire every transaction and subscription timer that is due now; each one
        is guarded, so a failing one does not cost the others their turn."""
        now = self.clock()
        for owner in self.queue.pop_due(now):
            try:
                if isinstance(owner, Usage):
                    self._usage_timer(owner, now)
                elif isinstance(owner, RestingUsage):
                    woken = self._wake(owner) if self.usages.get(owner.sub_id) is owner else None
                    if woken is not None:
                        self._usage_timer(woken, now)
                else:
                    for txn, event in self.table.fire(owner, now):
                        self._client_event(txn, event, now)
            except Exception as exc:
                self._unowned_error("timer", exc)
        if self.hold is not None and len(self.hold):
            self._release_held(now)
        if self._rest_at is not None and self._rest_at <= now:
            self._rest_quiet(now)

    # ------------------------------------------------------------------ rest

    def _rest_quiet(self, now: float) -> None:
        """Put the subscriptions quiet for ``rest_after`` to rest, oldest first.
        One that cannot rest (a retry wait, a resource list) leaves the queue of
        candidates until its next event."""
        awake = self._awake
        quiet_since = now - self.rest_after
        due: list[int] = []
        self._rest_at = None
        for sub_id, usage in awake.items():
            if len(due) >= REST_BATCH:
                self._rest_at = now  # more at the next turn
                break
            if usage.touched > quiet_since:
                self._rest_at = usage.touched + self.rest_after + REST_SLACK
                break
            due.append(sub_id)
        rest_data = self._rest_data
        for sub_id in due:
            usage = awake.pop(sub_id)
            if self.usages.get(sub_id) is not usage:
                continue
            resting: RestingUsage | None = None
            try:
                resting = rest(usage, rest_data)
                if resting is None:
                    continue
                assert usage.armed_at is not None  # rest() asks for an armed timer
                self.queue.hand_over(usage, resting, usage.armed_at)
                self.usages[sub_id] = resting
                self.dialogs.swap(usage, resting)
                self._resting += 1
                self._out.rested.append(sub_id)
            except Exception as exc:
                # It stays awake and whole: rest is an economy, never a step.
                if resting is not None and self.usages.get(sub_id) is not resting:
                    rest_data.discard(sub_id)
                self._unowned_error("rest", exc)
        if len(awake) * 4 < self._awake_peak:
            self._awake = dict(awake)
            self._awake_peak = len(awake)

    def _wake(self, resting: RestingUsage) -> Usage | None:
        """The usage of a resting subscription, in its place again. None: it
        could not be unpacked, and has ended with an internal failure."""
        sub_id = resting.sub_id
        try:
            data = self._packed(resting)
            usage = resting.wake(data, self._machine_params, self.rng)
        except Exception as exc:
            self._unowned_error("wake", exc)
            self._lose_resting(resting)
            return None
        self.usages[sub_id] = usage
        self.dialogs.swap(resting, usage)
        self._resting -= 1
        if resting.timer_seq:
            self.queue.hand_over(resting, usage, packed_deadline(data))
        else:
            usage.armed_at = None  # its timer fired: the caller runs it
        self._rest_data.discard(sub_id)
        self._touch(usage)
        return usage

    def _packed(self, resting: RestingUsage) -> bytes:
        """What :func:`rest` packed of ``resting``."""
        data = self._rest_data.get(resting.sub_id)
        if data is None:
            raise LookupError(f"subscription {resting.sub_id}: its packed data is gone")
        return data

    def _lose_resting(self, resting: RestingUsage) -> None:
        """End a resting subscription that cannot wake: its client is told."""
        sub_id = resting.sub_id
        self.obs.failed(FailureKind.INTERNAL)
        self.obs.state_changed(State.CONFIRMED, None)
        self._emit(Failure(sub_id, FailureKind.INTERNAL, detail="internal error: cannot wake"))
        self.queue.cancel(resting)
        self.dialogs.swap(resting, None)
        self._note(resting, Change.TERMINATED)  # its stored row goes too
        del self.usages[sub_id]
        self._rest_data.discard(sub_id)
        self._resting -= 1
        self._out.finished.append(sub_id)

    def _touch(self, usage: Usage) -> None:
        """To the end of the awake queue: rest waits for rest_after of quiet."""
        now = usage.touched = self.clock()
        awake = self._awake
        sub_id = usage.sub_id
        awake.pop(sub_id, None)
        awake[sub_id] = usage
        self._awake_peak = max(self._awake_peak, len(awake))
        if self._rest_at is None:
            self._rest_at = now + self.rest_after + REST_SLACK

    def _usage_timer(self, usage: Usage, now: float) -> None:
        if self.usages.get(usage.sub_id) is not usage:
            return
        usage.armed_at = None
        if usage.timer_kind is not None:
            lag = 0.0 if usage.deadline is None else now - usage.deadline
            self.obs.timer_fired(usage.timer_kind, lag)
            if lag > LAG_LIMIT:
                self._congested()
        self._event(usage, lambda u: u.on_timer(now))

    def _release_held(self, now: float) -> None:
        """Send held out-of-dialog SUBSCRIBEs, oldest first, as tokens allow."""
        assert self.hold is not None
        self._follow_pace(now)
        for usage, action in self.hold.release(now, self._still_held):
            self._event(usage, self._held_step(action))

    def _held_step(self, action: SendInitial) -> Step:
        return lambda u: self._send_initial(u, action, held=True)

    def _still_held(self, item: tuple[Usage, SendInitial]) -> bool:
        usage, action = item
        return self.usages.get(usage.sub_id) is usage and usage.txn == action.txn

    def _follow_pace(self, now: float) -> None:
        """The bucket's rate (and its burst: one second's worth) follows the pace."""
        pace, hold = self.pace, self.hold
        if pace is None or hold is None:
            return
        rate = pace.current(now)
        bucket = hold.bucket
        if rate != bucket.rate:
            bucket.rate = rate
            bucket.burst = max(1.0, rate)
            self.obs.pace(rate)

    def _congested(self) -> None:
        """A sign that this shard does more than it can (shard/pace.py)."""
        pace = self.pace
        if pace is not None and pace.congested(self.clock()):
            self._follow_pace(self.clock())

    def _sync_timer(self, usage: Usage) -> None:
        deadline = usage.deadline
        if deadline is None:
            if usage.armed_at is not None:
                self.queue.cancel(usage)
                usage.armed_at = None
            return
        if deadline != usage.armed_at or usage.timer_seq == 0:
            self.queue.schedule(usage, deadline)
            usage.armed_at = deadline
            if usage.timer_kind is not None:
                self.obs.timer_armed(usage.timer_kind)

    # ------------------------------------------------------------------ datagrams

    def datagram_received(
        self, data: bytes, addr: Address, transport: Transport = Transport.UDP
    ) -> None:
        """One datagram (or one stream message) from ``addr``; nothing it holds
        can raise out of here. Answers go back over ``transport`` to ``addr``:
        for a stream, the driver finds the connection it came in on."""
        self._inbound = transport
        now = self.clock()
        try:
            msg = parse_message(data, max_size=self.sip.max_message_size)
        except SipParseError as exc:
            if exc.kind == "empty":
                return  # a CRLF keep-alive (RFC 5626 §4.4.1): not an error
            self.obs.parse_error(exc.kind)
            self.obs.error("parse")
            log.debug("unparseable datagram from %s:%d: %s", addr[0], addr[1], exc)
            if isinstance(exc.partial, Request):
                self._reply_stateless(
                    exc.partial, 400, "Bad Request (body too short)", addr, size=len(data)
                )
            return
        try:
            if isinstance(msg, Response):
                self._on_response(msg, now)
            else:
                self._on_request(msg, addr, now, len(data))
        except Exception as error:
            self._unowned_error("datagram", error)

    def hold_unknown_notifies(self) -> None:
        """Keep NOTIFYs that match no dialog unanswered until :meth:`release_held_notifies`.

        A restarted shard has its socket before its store has loaded the
        dialogs it held, and a notifier streaming to it meanwhile would get 481
        and end the subscription there. Held, each is matched once the rows are
        back; at most ``HELD_NOTIFIES_MAX``, the rest dropped unanswered (over
        UDP the notifier sends them again)."""
        if self._held_notifies is None:
            self._held_notifies = []

    def release_held_notifies(self) -> int:
        """Match the held NOTIFYs against the dialogs known now (those that
        still match none get their 481); how many there were."""
        held, self._held_notifies = self._held_notifies or [], None
        for req, addr, transport, size in held:
            self._inbound = transport
            try:
                self._on_request(req, addr, self.clock(), size)
            except Exception as error:
                self._unowned_error("held NOTIFY", error)
        return len(held)

    def _hold_notify(self, req: Request, addr: Address, size: int) -> None:
        held = self._held_notifies
        assert held is not None
        if len(held) >= HELD_NOTIFIES_MAX:
            self.obs.error("notify_not_held")
            return
        held.append((req, addr, self._inbound, size))

    def send_failed(
        self,
        ref: ClientTransaction | None,
        detail: str,
        kind: FailureKind = FailureKind.TRANSPORT,
    ) -> None:
        """The driver could not send a datagram that :meth:`take` gave it (a name
        that did not resolve: ``dns``; a TLS handshake or certificate that
        failed: ``tls``; an address of the wrong family, a refused connection,
        an error from the socket: ``transport``): the request's transaction
        fails, and its subscription with this kind."""
        self.obs.error("transport")
        log.warning("send failed: %s", detail)
        if ref is None:
            return  # a response: the peer retransmits its request
        now = self.clock()
        pending: _Pending = ref.context
        pending.error = valid_text(detail)
        pending.error_kind = kind
        try:
            for event in self.table.transport_error(ref, now):
                self._client_event(ref, event, now)
        except Exception as exc:
            self._unowned_error("transport event", exc)

    def _unowned_error(self, where: str, exc: BaseException) -> None:
        """An exception outside any one subscription's step: count it, go on."""
        self.obs.error("internal")
        log.error("engine: unexpected error in a %s", where, exc_info=exc)

    def _destination(self, addr: Address) -> Destination:
        """Where an answer to what came from ``addr`` goes."""
        if self._inbound is not Transport.UDP:
            return Destination(self._inbound, addr[0], addr[1])
        dest = self._dests.get(addr)
        if dest is None:
            if len(self._dests) >= _DEST_CACHE:
                self._dests.clear()
            dest = self._dests[addr] = udp(addr)
        return dest

    def _on_response(self, resp: Response, now: float) -> None:
        vias = resp.get_all("Via")
        try:
            if len(vias) != 1 or not self._our_via(vias[0]):
                # Not ours (RFC 3261 §8.1.3.3): a response has our Via alone.
                self.obs.parse_error("header")
                log.debug("response %d with a Via that is not ours alone dropped", resp.status)
                return
            txn, events = self.table.receive_response(resp, now)
        except SipParseError as exc:
            self.obs.parse_error(exc.kind)
            self.obs.error("parse")
            return
        if txn is None:
            log.debug("stray response %d dropped", resp.status)
            return
        self.obs.response_received(resp.status)
        for event in events:
            self._client_event(txn, event, now)

    def _our_via(self, via: str) -> bool:
        """Is this Via ours? Ours come back as we wrote them (``SIP/2.0/UDP
        host:port;branch=...``): a prefix test; anything else is parsed."""
        prefix = self._via_prefix
        if via.startswith(prefix) and via[len(prefix) : len(prefix) + 1] in (";", ""):
            return True
        return parse_via(via).sent_by == self._hostport

    def _client_event(self, txn: ClientTransaction, event: Event, now: float) -> None:
        pending: _Pending = txn.context
        if isinstance(event, Send):  # a Retransmit from timer E
            self.obs.request_sent("retransmission")
            self._out.datagrams.append((event.data, pending.dest, txn))
        elif isinstance(event, Deliver):
            try:
                self._on_final(txn, pending, event.response, now)
            finally:
                if event.response.status >= 200:
                    pending.request = None
        elif isinstance(event, TimedOut):
            self.obs.transaction_timeout()
            self.obs.timer_fired(TRANSACTION_TIMER, 0.0)
            self._if_current(pending, lambda u: u.on_timeout(now, pending.txn_no))
        elif isinstance(event, TransportError):
            detail = pending.error or "transport error"
            kind = pending.error_kind
            self._if_current(
                pending, lambda u: u.on_transport_error(now, pending.txn_no, detail, kind)
            )

    def _if_current(self, pending: _Pending, step: Step) -> None:
        usage = pending.usage
        if self.usages.get(usage.sub_id) is not usage:
            return  # the subscription is gone; a late outcome changes nothing
        self._event(usage, step)

    def _on_final(
        self, txn: ClientTransaction, pending: _Pending, resp: Response, now: float
    ) -> None:
        if resp.status < 200:
            return
        usage = pending.usage
        current = pending.txn_no == usage.txn and self.usages.get(usage.sub_id) is usage
        if current and resp.status == 503 and self._fail_over(txn, pending, resp):
            return
        if current and resp.status in AUTH_CODES and self._on_challenge(pending, resp, now):
            return
        if current and 200 <= resp.status < 300 and usage.dialog is not None:
            try:
                if pending.kind == "initial":
                    usage.dialog.confirm(resp)
                    # Its first record reserves the first block of CSeqs.
                    usage.cseq_high = max(usage.cseq_high, usage.dialog.local_cseq + CSEQ_BLOCK)
                    self._note(usage, Change.CONFIRMED)
                elif not parse_tag(resp.get("To") or ""):
                    raise SipParseError("header", "2xx without To tag")
                else:
                    usage.dialog.update_from_response(resp)
                    self._note(usage, Change.REFRESHED)
            except SipParseError as exc:
                self.obs.parse_error(exc.kind)
                detail = valid_text(f"dialog refused: {exc}")
                self._if_current(
                    pending, lambda u: u.on_transport_error(now, pending.txn_no, detail)
                )
                return
        info = response_info(resp, pending.txn_no)
        self._if_current(pending, lambda u: u.on_response(info, now))

    def _fail_over(self, txn: ClientTransaction, pending: _Pending, resp: Response) -> bool:
        """A 503 from one target of a name (RFC 3263 §4.3): hold that target back
        for its Retry-After and send the request again as a new transaction,
        which the driver sends to the next target. Out-of-dialog requests only,
        and a few times per request."""
        request = pending.request
        if not isinstance(pending.dest, SipTarget) or pending.kind != "initial" or request is None:
            return False
        if pending.failovers >= _MAX_FAILOVERS:
            return False
        usage = pending.usage
        retry_after = response_info(resp, pending.txn_no).retry_after
        self._out.refused_targets.append((txn, None if retry_after is None else float(retry_after)))
        retry, branch = next_attempt(request, usage)
        self._start(
            usage, retry, pending.dest, pending.txn_no, pending.kind, key=(branch, retry.method),
            failovers=pending.failovers + 1,
        )
        return True

    def _on_challenge(self, pending: _Pending, resp: Response, now: float) -> bool:
        """A 401, 407 or 403: answer it with a retry in the same machine
        transaction, or fail the subscription with kind ``auth``. False when it
        is no auth matter (a 403 to a request without credentials)."""
        usage = pending.usage
        before = usage.state
        request = pending.request
        if request is None:
            return False
        try:
            outcome = self.auth.challenged(usage, request, resp)
            if outcome is None:
                return False
            if isinstance(outcome, tuple):
                retry, branch = outcome
                self._start(
                    usage, retry, pending.dest, pending.txn_no, pending.kind,
                    key=(branch, retry.method),
                )
                return True
        except Exception as exc:
            self._internal(usage, exc)
            self._settle(usage, before)
            self._run_later()
            return True
        info = dataclasses.replace(
            response_info(resp, pending.txn_no), auth_failure=outcome.failure_detail()
        )
        self._if_current(pending, lambda u: u.on_response(info, now))
        return True

    def _on_request(self, req: Request, addr: Address, now: float, size: int) -> None:
        # The message's index of first values (canonical name -> value), built once
        # per message and shared with the transaction and dialog layers' lookups.
        first = req.first_values()
        if not first.keys() >= _MANDATORY_SET:
            missing = [h for h in _MANDATORY if h not in first]
            self.obs.parse_error("missing-header")
            self.obs.error("parse")
            if "Via" not in missing and "CSeq" not in missing:
                self._reply_stateless(req, 400, f"Missing {missing[0]}", addr, size=size)
            return
        found = self.dialogs.find(first["Call-ID"]) if req.method == "NOTIFY" else None
        if found is None:
            if req.method == "NOTIFY" and self._held_notifies is not None:
                self._hold_notify(req, addr, size)
                return
            # Nothing of ours: answered without a server transaction, so a flood
            # from anywhere keeps no state here (review of #15).
            self._answer_stateless(req, first, addr, size)
            return
        self._on_notify(req, first, addr, now, found)

    def _on_notify(
        self,
        req: Request,
        first: Mapping[str, str],
        addr: Address,
        now: float,
        found: Usage | RestingUsage,
    ) -> None:
        """Answer a NOTIFY of one of our dialogs, then let its subscription act on it.

        No server transaction is kept: the dialog's CSeq tells a retransmission
        (the same CSeq again) from a new NOTIFY, and the subscription answers it
        the way it answered the first (RFC 3261 §17.2.2 asks only for the same
        response). Holding a transaction for Timer J (64 T1) per NOTIFY would keep
        ~64 000 of them alive during a set-up at 2 000/s, and their memory stays
        scattered among the long-lived dialogs set up meanwhile."""
        try:
            # The answer must be addressable before the dialog takes the NOTIFY's
            # CSeq; a top Via that cannot be read leaves no way to answer at all
            # (the usual Via is not parsed here).
            via_received(first["Via"], addr)
        except SipParseError as unreadable:
            self.obs.parse_error(unreadable.kind)
            self.obs.error("parse")
            log.debug("NOTIFY from %s:%d with an unreadable Via dropped", addr[0], addr[1])
            return
        if first.get("Require") is not None:
            # RFC 3261 §8.2.2.3; eventlist is the one extension we support.
            unsupported = _unsupported(req.get_all("Require"))
            if unsupported:
                headers = (("Unsupported", ", ".join(unsupported)),)
                self._respond(req, (420, "Bad Extension"), addr, headers=headers)
                return
        code, reason, usage, info = self.dialogs.match_notify(req, first, found)
        self.obs.notify_package(first.get("Event", ""), usage is not None)
        if usage is None or info is None:
            self._respond(req, (code, reason), addr, out_of_dialog=code == 481)
            return
        if not info.in_order:  # its CSeq again: our answer did not reach the notifier
            self.obs.retransmission_received()
            self._congested()
        before = usage.state
        try:
            code, actions = usage.on_notify(info, now)
        except Exception as exc:
            self._respond(req, (500, "Server Internal Error"), addr)
            self._internal(usage, exc)
            self._settle(usage, before)
            self._run_later()
            return
        reason = "Subscription Does Not Exist" if code == 481 else "OK"
        self._respond(req, (code, reason), addr)
        self._finish_event(usage, before, actions, (req.body, first.get("Content-Type", "")))

    def _respond(
        self,
        req: Request,
        reply: tuple[int, str],
        addr: Address,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        out_of_dialog: bool = False,
    ) -> None:
        code, reason = reply
        data = response_bytes(
            req,
            code,
            reason,
            headers=headers,
            to_tag=ids.new_tag() if out_of_dialog else None,
            source=addr,
        )
        self.obs.response_sent(code)
        self._out.datagrams.append((data, self._destination(addr), None))

    def _answer_stateless(
        self, req: Request, first: Mapping[str, str], addr: Address, size: int
    ) -> None:
        """A request outside our dialogs: 420, 481, 405 or OPTIONS' 200."""
        if first.get("Require") is not None:
            unsupported = _unsupported(req.get_all("Require"))
            if unsupported:
                headers = (("Unsupported", ", ".join(unsupported)),)
                self._reply_stateless(req, 420, "Bad Extension", addr, headers=headers, size=size)
                return
        if req.method == "NOTIFY":
            self.obs.notify_package(first.get("Event", ""), False)
            self._reply_stateless(req, 481, "Subscription Does Not Exist", addr, size=size)
        elif req.method == "OPTIONS":
            self._reply_stateless(req, 200, "OK", addr, headers=_OPTIONS_200, size=size)
        else:
            self._reply_stateless(req, 405, "Method Not Allowed", addr, headers=_ALLOW, size=size)

    def _reply_stateless(
        self,
        req: Request,
        code: int,
        reason: str,
        addr: Address,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        size: int,
    ) -> None:
        """Answer without a transaction, with at most ``_STATELESS_SLACK`` bytes
        more than the request brought (our To tag, received/rport, a longer
        status line): the source is not verified, and a spoofed one must not be
        flooded with more than it sent (no amplification). Optional headers go
        first; a response that still does not fit is not sent."""
        limit = size + _STATELESS_SLACK
        try:
            data = response_bytes(
                req, code, reason, headers=headers, to_tag=ids.new_tag(), source=addr
            )
            if len(data) > limit and headers:
                data = response_bytes(req, code, reason, to_tag=ids.new_tag(), source=addr)
        except (SipParseError, ValueError):
            return
        if len(data) > limit:
            self.obs.error("unanswered")
            return
        self.obs.response_sent(code)
        self._out.datagrams.append((data, self._destination(addr), None))

    # ------------------------------------------------------------------ events and actions

    def _event(self, usage: Usage, step: Step) -> None:
        """Run one machine event and carry out its actions, guarded."""
        before = usage.state
        try:
            actions = step(usage)
        except Exception as exc:
            self._internal(usage, exc)
            self._settle(usage, before)
            self._run_later()
            return
        self._finish_event(usage, before, actions, None)

    def _finish_event(
        self,
        usage: Usage,
        before: State,
        actions: list[Action],
        notify: tuple[bytes, str] | None,
    ) -> None:
        try:
            self._apply(usage, actions, notify)
        except Exception as exc:
            self._internal(usage, exc)
        self._settle(usage, before)
        self._run_later()

    def _run_later(self) -> None:
        while self._later:
            usage, step = self._later.pop(0)
            if self.usages.get(usage.sub_id) is usage:
                self._event(usage, step)

    def _internal(self, usage: Usage, exc: BaseException) -> None:
        """An unexpected exception in this subscription's step: it fails (and is
        retried) rather than being left with no timer and no transaction."""
        self.obs.error("internal")
        detail = valid_text(f"internal error: {type(exc).__name__}: {exc}")
        log.error("subscription %d: %s", usage.sub_id, detail, exc_info=exc)
        try:
            self._apply(usage, usage.on_internal_error(self.clock(), detail), None)
        except Exception as again:
            log.error("subscription %d abandoned", usage.sub_id, exc_info=again)
            self.obs.failed(FailureKind.INTERNAL)
            self._emit(Failure(usage.sub_id, FailureKind.INTERNAL, detail=detail))
            self._drop(usage)

    def _settle(self, usage: Usage, before: State) -> None:
        """After an event: count the move, arm the timer, drop a finished usage."""
        if self.usages.get(usage.sub_id) is not usage:
            return  # abandoned or already dropped
        after = usage.state
        if before is State.UNCONFIRMED and after is State.CONFIRMED:
            self.obs.established()
        if usage.finished:
            self._drop(usage)
            return
        if self.changes is not None:
            self._note(usage, Change.ROUTINE)
        self._sync_timer(usage)
        if usage.counted is not after:
            self.obs.state_changed(usage.counted, after)
            usage.counted = after
        self._touch(usage)

    def _apply(
        self, usage: Usage, actions: list[Action], notify: tuple[bytes, str] | None
    ) -> None:
        """Carry out a state machine's actions; ``notify`` is the (body,
        Content-Type) of the NOTIFY being handled, if any."""
        for action in actions:
            if isinstance(action, EmitStatus):
                self._emit_status(usage, action, notify)
            elif isinstance(action, SendInitial):
                self._send_initial(usage, action)
            elif isinstance(action, SendInDialog):
                self._send_in_dialog(usage, action)
            elif isinstance(action, DropDialog):
                self.dialogs.forget(usage)
                self._note(usage, Change.TERMINATED)
            elif isinstance(action, EmitFailure):
                self.obs.failed(action.kind)
                self._emit(
                    Failure(
                        usage.sub_id,
                        action.kind,
                        action.code,
                        valid_text(action.detail),
                        action.retry_in,
                    )
                )

    def _emit_status(
        self, usage: Usage, action: EmitStatus, notify: tuple[bytes, str] | None
    ) -> None:
        sub_id = usage.sub_id
        reason = valid_text(action.reason)
        if action.state is SubscriptionState.TERMINATED:
            self.obs.terminated(reason or "other")
        body, content_type = notify or (b"", "")
        # Interned: the fan-out keeps a status per dialog, and a handful of
        # types would otherwise be a string per dialog.
        content_type = sys.intern(valid_text(content_type))
        if not body:
            self._emit(Status(sub_id, action.state, reason, content_type=content_type))
            return
        if usage.lists is not None or is_list_body(content_type):
            self._emit_list(usage, action.state, reason, content_type, body)
            return
        document = None
        if usage.package == PACKAGE:
            presentity, error = decode_body(content_type, body)
            if error:
                self.obs.error("pidf")
        else:
            decoded = decode(usage.package, content_type, body)
            presentity, document, error = decoded.presentity, decoded.document, decoded.error
            if error:
                self.obs.error("body")
        self._emit(
            Status(
                sub_id,
                action.state,
                reason,
                presentity=presentity,
                content_type=content_type,
                body=body,
                error=error,
                document=document,
            )
        )

    def _emit_list(
        self,
        usage: Usage,
        state: SubscriptionState,
        reason: str,
        content_type: str,
        body: bytes,
    ) -> None:
        """A resource list NOTIFY (RFC 4662): one status per resource instance it
        names, and one for the list itself when its body did not read or its
        subscription ended."""
        tracker = usage.lists
        if tracker is None:
            tracker = usage.lists = ListTracker(usage.package)
        result = tracker.update(content_type, body)
        for resource in result.resources:
            self._emit(resource_status(usage.sub_id, resource))
        list_uri = result.uri or usage.record
        if result.error:
            self.obs.error("list")
            self._emit(
                Status(
                    usage.sub_id, state, reason, content_type=content_type, body=body,
                    error=result.error, list=list_uri,
                )
            )
        elif state is SubscriptionState.TERMINATED:
            self._emit(Status(usage.sub_id, state, reason, list=list_uri))
        if result.needs_refresh and state is not SubscriptionState.TERMINATED:
            self._later.append((usage, self._list_refresh))

    def _list_refresh(self, usage: Usage) -> list[Action]:
        """Ask for a list's full state again, unless a SUBSCRIBE is already out
        (its NOTIFY brings the full state: RFC 4662 §5.2)."""
        if usage.outstanding or usage.dialog is None:
            return []
        self.obs.list_refresh()
        return usage.refresh(self.clock())

    def _send_initial(
        self, usage: Usage, action: SendInitial, *, held: bool = False
    ) -> list[Action]:
        self.dialogs.forget(usage)
        hold = self.hold
        if hold is not None and not held:
            self._follow_pace(self.clock())
        admitted = held or hold is None or hold.admit(usage.sub_id, (usage, action), self.clock())
        if not admitted:
            return []
        try:
            req, dialog, dest, key = self.requester.initial(
                usage.record, usage.subscriber, action.target, action.expires, usage.package,
                did=usage.sub_id,
            )
        except (SipParseError, ValueError) as exc:
            self._cannot_send(usage, action.txn, f"cannot build SUBSCRIBE: {exc}")
            return []
        self.auth.authorize(usage, req)
        usage.dialog = dialog
        if usage.lists is not None:
            usage.lists.reset()  # a new dialog: list versions start again
        self.dialogs.add(usage)
        self.obs.request_sent("initial")
        self._start(usage, req, dest, action.txn, "initial", key=key)
        return []

    def _send_in_dialog(self, usage: Usage, action: SendInDialog) -> None:
        dialog = usage.dialog
        if dialog is None:
            self._cannot_send(usage, action.txn, "no dialog to send the SUBSCRIBE in")
            return
        try:
            req, dest = self.requester.in_dialog(dialog, action.expires, usage.package)
        except (SipParseError, ValueError) as exc:
            self._cannot_send(usage, action.txn, f"cannot build in-dialog SUBSCRIBE: {exc}")
            return
        self.auth.authorize(usage, req)
        if self.changes is not None:
            self._reserve_cseq(usage, dialog)
        kind = "unsubscribe" if action.expires == 0 else "refresh"
        self.obs.request_sent(kind)
        self._start(usage, req, dest, action.txn, kind)

    def _start(
        self,
        usage: Usage,
        req: Request,
        dest: Hop,
        txn_no: int,
        kind: str,
        *,
        key: tuple[str, str] | None = None,
        failovers: int = 0,
    ) -> None:
        pending = _Pending(usage, txn_no, dest, kind, req)
        pending.failovers = failovers
        txn, events = self.table.start_client(req, self.clock(), context=pending, key=key)
        self.obs.timer_armed(TRANSACTION_TIMER)
        datagrams: list[Datagram] = self._out.datagrams
        for event in events:
            if isinstance(event, Send):
                datagrams.append((event.data, dest, txn))

    def _reserve_cseq(self, usage: Usage, dialog: Dialog) -> None:
        """Keep the store's CSeq mark a half block ahead of the CSeqs sent, so the
        higher mark is written long before it is needed (store/record.py)."""
        if dialog.local_cseq + CSEQ_BLOCK // 2 > usage.cseq_high:
            usage.cseq_high = dialog.local_cseq + CSEQ_BLOCK
            self._note(usage, Change.ROUTE)

    def _cannot_send(self, usage: Usage, txn_no: int, detail: str) -> None:
        """A request that could not be built fails like one that could not be
        sent; the machine hears of it after the current event, not inside it."""
        self.obs.error("transport")
        log.warning("subscription %d: %s", usage.sub_id, detail)
        now = self.clock()
        text = valid_text(detail)
        self._later.append((usage, lambda u: u.on_transport_error(now, txn_no, text)))

    def _drop(self, usage: Usage) -> None:
        self._note(usage, Change.TERMINATED)
        if usage.counted is not None:
            self.obs.state_changed(usage.counted, None)
            usage.counted = None
        self.dialogs.forget(usage)
        if self.hold is not None:
            self.hold.discard(usage.sub_id)
        if usage.armed_at is not None or usage.timer_seq:
            self.queue.cancel(usage)
            usage.armed_at = None
        if self.usages.get(usage.sub_id) is usage:
            del self.usages[usage.sub_id]
            self._out.finished.append(usage.sub_id)
        self._awake.pop(usage.sub_id, None)
        _release(usage)
