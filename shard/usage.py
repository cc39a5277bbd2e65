"""A subscription together with its SIP side: the dialog usage of reSIProcate's DUM.

The state machine (:class:`Subscription`) stays free of SIP objects; the
engine's fields are slots of the same object rather than a second object that
points at it, which saves an object and a reference per subscription (there
may be a million).

A confirmed subscription with nothing in flight can rest: :func:`rest` packs
it into a :class:`RestingUsage` (a few shared references) and its packed
numbers and strings into the engine's :class:`PackedIdMap` by its id, and
:meth:`RestingUsage.wake` gives back an equal :class:`Usage`.
"""

from __future__ import annotations

import math
import random
import struct

from ..packed_map import PackedIdMap
from ..packed_strings import pack_strings, unpack_first, unpack_strings
from ..presence.resourcelist import ListTracker
from ..presence.status import FailureKind
from ..sip.dialog import Dialog
from .auth import ClientAuth
from .subscription import MachineParams, State, Subscription, TimerKind

__all__ = ["RestingUsage", "Usage", "packed_call_id", "packed_deadline", "rest"]


class Usage(Subscription):
    """One subscription, its dialog, and what the engine's timer queue and
    observer know of it (the deadline armed, the state counted).

    ``package`` is the event package the dialog speaks (RFC 6665 §7.2);
    ``lists`` is made on the first ``multipart/related`` NOTIFY, when the
    record turns out to be a resource list (RFC 4662), and reset with each
    new dialog: versions start again. ``auth`` is made on the first challenge
    and kept across dialogs (a nonce is not bound to one). ``cseq_high`` is
    the CSeq mark of the dialog store (store/record.py): no CSeq above it is
    sent before a higher mark was asked for. ``touched`` is when the engine
    last ran an event of it (engine clock): long quiet, it may rest
    (:class:`RestingUsage`)."""

    __slots__ = (
        "armed_at", "auth", "counted", "cseq_high", "dialog", "lists", "package", "touched"
    )

    def __init__(
        self,
        sub_id: int,
        record: str,
        subscriber: str,
        params: MachineParams,
        *,
        rng: random.Random | None,
        package: str = "presence",
    ) -> None:
        super().__init__(sub_id, record, subscriber, params, rng=rng)
        self.package = package
        self.lists: ListTracker | None = None
        self.auth: ClientAuth | None = None
        self.dialog: Dialog | None = None
        self.armed_at: float | None = None
        self.counted: State | None = None  # the state the observer last counted it in
        #: The dialog's highest local CSeq reserved in the store (0: not stored).
        self.cseq_high = 0
        self.touched = 0.0


#: The numbers of a resting subscription, little-endian, no padding: deadline,
#: refresh and expiry, last at-once re-subscribe (NaN: none), T1; asked
#: Expires, SUBSCRIBEs sent, 3xx in a row, errors, ignored, last code,
#: NOTIFYs, retries, CSeq mark, local CSeq, remote CSeq (-1: none); timer
#: kind and last failure (255: none), flags, routes.
_NUMBERS = struct.Struct("<5dIIHIIHQIQIqBBBH")
_NONE = 255
_KINDS = tuple(TimerKind)
_FAILURES = tuple(FailureKind)
_GOT_NOTIFY = 1
_KEEP_PRESET_ROUTE = 2
_OWN_LOCAL_URI = 4  # the dialog's local URI is not the subscriber's string
_OWN_REMOTE_URI = 8  # nor its remote URI the record's
_REDIRECTED = 16  # went to a 3xx Contact (``_target``)


class RestingUsage:
    """A confirmed subscription with nothing in flight, packed.

    Most of a shard's subscriptions are quiet most of the time: a refresh an
    hour away, now and then a NOTIFY. At rest, one is this object (the strings
    other layers share by reference: ids, record, subscriber, package, target)
    and its packed data in the engine's table of resting data, by its id (a
    bytes object of its own cost ~45 bytes more and a hole among the pools
    when it went; a slot for the table, 16 bytes of pymalloc's rounding):
    less than half of a :class:`Usage` with its :class:`Dialog`, tags and
    boxed numbers. The engine wakes it (:meth:`wake`, with that data) for any
    event and lets it rest again once it has been quiet for longer than any
    transaction lives.

    It owns the timer entry of the usage it was (``timer_seq``)."""

    __slots__ = (
        "auth",
        "package",
        "record",
        "remote_target",
        "sub_id",
        "subscriber",
        "timer_seq",
    )

    def __init__(self, usage: Usage, dialog: Dialog) -> None:
        self.sub_id = usage.sub_id
        self.record = usage.record
        self.subscriber = usage.subscriber
        self.package = usage.package
        self.auth = usage.auth
        self.remote_target = dialog.remote_target
        self.timer_seq = 0

    @property
    def state(self) -> State:
        return State.CONFIRMED

    def wake(self, data: bytes, params: MachineParams, rng: random.Random | None) -> Usage:
        """The usage again from ``data``, what :func:`rest` packed, equal to the
        one that went to rest (its timer entry is the caller's to hand over)."""
        (
            deadline, refresh_at, expires_at, last_resubscribe, t1,
            expires, txn, redirects, errors, ignored, last_code,
            notifies, retries, cseq_high, local_cseq, remote_cseq,
            kind, failure, flags, routes,
        ) = _NUMBERS.unpack_from(data)
        strings = unpack_strings(data, _NUMBERS.size)
        call_id, local_tag, remote_tag = strings[0], strings[1], strings[2]
        route_set = strings[3 : 3 + routes]
        rest = strings[3 + routes :]
        local_uri = rest.pop(0) if flags & _OWN_LOCAL_URI else self.subscriber
        remote_uri = rest.pop(0) if flags & _OWN_REMOTE_URI else self.record
        usage = Usage(
            self.sub_id, self.record, self.subscriber, params, rng=rng, package=self.package
        )
        dialog = Dialog(
            call_id=call_id,
            local_tag=local_tag,
            local_uri=local_uri,
            remote_uri=remote_uri,
            remote_target=self.remote_target,
            route_set=route_set,
            local_cseq=local_cseq,
            remote_tag=remote_tag,
            remote_cseq=None if remote_cseq < 0 else remote_cseq,
            keep_preset_route=bool(flags & _KEEP_PRESET_ROUTE),
        )
        dialog.confirmed = True
        usage.dialog = dialog
        usage.auth = self.auth
        usage.cseq_high = cseq_high
        usage.state = State.CONFIRMED
        usage.counted = State.CONFIRMED
        usage.deadline = deadline
        usage.armed_at = deadline
        usage.timer_kind = None if kind == _NONE else _KINDS[kind]
        usage.t1 = t1
        usage._expires = expires
        usage._txn = txn
        usage._refresh_at = refresh_at
        usage._expires_at = expires_at
        usage._got_notify = bool(flags & _GOT_NOTIFY)
        usage._target = rest.pop(0) if flags & _REDIRECTED else None
        usage._redirects = redirects
        usage._last_resubscribe = None if math.isnan(last_resubscribe) else last_resubscribe
        usage.notifies = notifies
        usage.errors = errors
        usage.retries = retries
        usage.ignored = ignored
        usage.last_code = last_code
        usage.last_failure = None if failure == _NONE else _FAILURES[failure]
        return usage


def rest(usage: Usage, table: PackedIdMap) -> RestingUsage | None:
    """``usage`` packed, if it can rest: confirmed, settled, its timer armed,
    nothing outstanding and nothing that only an object can hold (a resource
    list's tracker, untried 3xx Contacts, a failed refresh to report, Timer N).
    Its packed data goes into ``table`` under its id, which the caller pops
    when it wakes or goes. None: it stays as it is, ``table`` untouched."""
    dialog = usage.dialog
    deadline = usage.armed_at
    if (
        usage.state is not State.CONFIRMED
        or usage.counted is not State.CONFIRMED
        or usage._outstanding
        or dialog is None
        or not dialog.confirmed
        or dialog.remote_tag is None
        or usage.lists is not None
        or usage._contacts
        or usage._refresh_failure is not None
        or usage._no_notify_by is not None
        or deadline is None
        or usage.deadline != deadline
        or usage.timer_seq == 0
    ):
        return None
    flags = _GOT_NOTIFY if usage._got_notify else 0
    if dialog.keep_preset_route:
        flags |= _KEEP_PRESET_ROUTE
    routes = dialog.route_set
    extra: list[str] = []
    if dialog.local_uri is not usage.subscriber:
        flags |= _OWN_LOCAL_URI
        extra.append(dialog.local_uri)
    if dialog.remote_uri is not usage.record:
        flags |= _OWN_REMOTE_URI
        extra.append(dialog.remote_uri)
    if usage._target is not None:
        flags |= _REDIRECTED
        extra.append(usage._target)
    kind = usage.timer_kind
    failure = usage.last_failure
    last = usage._last_resubscribe
    try:
        data = _NUMBERS.pack(
            deadline, usage._refresh_at, usage._expires_at,
            math.nan if last is None else last, usage.t1,
            usage._expires, usage._txn, usage._redirects, usage.errors, usage.ignored,
            usage.last_code, usage.notifies, usage.retries, usage.cseq_high,
            dialog.local_cseq, -1 if dialog.remote_cseq is None else dialog.remote_cseq,
            _NONE if kind is None else _KINDS.index(kind),
            _NONE if failure is None else _FAILURES.index(failure),
            flags, len(routes),
        ) + pack_strings(
            dialog.call_id, dialog.local_tag, dialog.remote_tag, *routes, *extra
        )
    except (struct.error, OverflowError):
        return None  # a number or string beyond the packed widths: it stays awake
    resting = RestingUsage(usage, dialog)
    table[usage.sub_id] = data
    return resting


def packed_call_id(data: bytes) -> str:
    """The Call-ID of a resting subscription's dialog, the first string packed."""
    return unpack_first(data, _NUMBERS.size)


def packed_deadline(data: bytes) -> float:
    """The deadline a resting subscription's timer entry is armed with."""
    return float(_NUMBERS.unpack_from(data)[0])
