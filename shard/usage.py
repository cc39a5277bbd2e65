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

import random
import struct

from ..packed_map import PackedIdMap
from ..packed_strings import pack_counts, pack_strings, unpack_counts, unpack_first, unpack_strings
from ..presence.resourcelist import ListTracker
from ..presence.status import FailureKind
from ..sip.dialog import Dialog
from .auth import ClientAuth
from .call_id import label
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


#: A resting subscription's data: a layout byte, then its times as
#: little-endian doubles (deadline; refresh, unless it equals the deadline;
#: expiry; last at-once re-subscribe, if any; T1), then its counters as
#: :func:`pack_counts` packs them (asked Expires, SUBSCRIBEs sent, 3xx in a
#: row, errors, ignored, last code, NOTIFYs, retries, CSeq mark, local CSeq,
#: remote CSeq + 1 (0: none), timer kind + 1 and last failure + 1 (0: none),
#: flags, routes), then its strings. A fixed struct took 97 bytes for what
#: is 40 to 50 here; our own Call-ID and tag as raw bytes save 28 more.
_DOUBLE = struct.Struct("<d")
#: The times of a layout, by their count: 3, 4 or 5 doubles.
_TIMES = (struct.Struct("<3d"), struct.Struct("<4d"), struct.Struct("<5d"))
_COUNTS = 15
_REFRESH_IS_DEADLINE = 1
_HAS_LAST_RESUBSCRIBE = 2
#: The Call-ID is one we made for this id (``<label><32 hex>@<host>``): its
#: random part is kept as 16 raw bytes after the times, its host as its
#: first string.
_OUR_CALL_ID = 4
#: The local tag is 16 lowercase hex digits (ours): 8 raw bytes follow.
_OUR_TAG = 8
_CALL_ID_RANDOM = 16
_TAG_RANDOM = 8
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
        layout = data[0]
        offset = 1
        count = _doubles(layout)
        times = _TIMES[count - 3].unpack_from(data, offset)
        offset += 8 * count
        deadline = times[0]
        at = 1
        if layout & _REFRESH_IS_DEADLINE:
            refresh_at = deadline
        else:
            refresh_at = times[1]
            at = 2
        expires_at = times[at]
        last_resubscribe: float | None = None
        if layout & _HAS_LAST_RESUBSCRIBE:
            last_resubscribe = times[at + 1]
        t1 = times[count - 1]
        call_random = local_random = ""
        if layout & _OUR_CALL_ID:
            call_random = data[offset : offset + _CALL_ID_RANDOM].hex()
            offset += _CALL_ID_RANDOM
        if layout & _OUR_TAG:
            local_random = data[offset : offset + _TAG_RANDOM].hex()
            offset += _TAG_RANDOM
        counts, offset = unpack_counts(data, offset, _COUNTS)
        (
            expires, txn, redirects, errors, ignored, last_code, notifies, retries,
            cseq_high, local_cseq, remote_cseq, kind, failure, flags, routes,
        ) = counts
        rest = unpack_strings(data, offset)
        first = rest.pop(0)
        call_id = f"{label(self.sub_id)}{call_random}@{first}" if call_random else first
        local_tag = local_random if local_random else rest.pop(0)
        remote_tag = rest.pop(0)
        route_set = rest[:routes]
        del rest[:routes]
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
            remote_cseq=None if remote_cseq == 0 else remote_cseq - 1,
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
        usage.timer_kind = None if kind == 0 else _KINDS[kind - 1]
        usage.t1 = t1
        usage._expires = expires
        usage._txn = txn
        usage._refresh_at = refresh_at
        usage._expires_at = expires_at
        usage._got_notify = bool(flags & _GOT_NOTIFY)
        usage._target = rest.pop(0) if flags & _REDIRECTED else None
        usage._redirects = redirects
        usage._last_resubscribe = last_resubscribe
        usage.notifies = notifies
        usage.errors = errors
        usage.retries = retries
        usage.ignored = ignored
        usage.last_code = last_code
        usage.last_failure = None if failure == 0 else _FAILURES[failure - 1]
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
    refresh_at = usage._refresh_at
    layout = 0
    times = [deadline]
    if refresh_at == deadline:
        layout |= _REFRESH_IS_DEADLINE
    else:
        times.append(refresh_at)
    times.append(usage._expires_at)
    if last is not None:
        layout |= _HAS_LAST_RESUBSCRIBE
        times.append(last)
    times.append(usage.t1)
    strings = [dialog.call_id]
    raw = b""
    ours = _our_call_id(dialog.call_id, usage.sub_id)
    if ours is not None:
        layout |= _OUR_CALL_ID
        raw, strings[0] = ours
    local_tag = dialog.local_tag
    tag_random = _hex_bytes(local_tag, 2 * _TAG_RANDOM)
    if tag_random is not None:
        layout |= _OUR_TAG
        raw += tag_random
    else:
        strings.append(local_tag)
    out = bytearray((layout,))
    try:
        out += _TIMES[len(times) - 3].pack(*times)
        out += raw
        pack_counts(out, (
            usage._expires, usage._txn, usage._redirects, usage.errors, usage.ignored,
            usage.last_code, usage.notifies, usage.retries, usage.cseq_high,
            dialog.local_cseq, 0 if dialog.remote_cseq is None else dialog.remote_cseq + 1,
            0 if kind is None else _KINDS.index(kind) + 1,
            0 if failure is None else _FAILURES.index(failure) + 1,
            flags, len(routes),
        ))
        out += pack_strings(*strings, dialog.remote_tag, *routes, *extra)
    except (struct.error, OverflowError, TypeError):
        return None  # a number or string beyond what packs: it stays awake
    data = bytes(out)
    resting = RestingUsage(usage, dialog)
    table[usage.sub_id] = data
    return resting


def _hex_bytes(text: str, length: int) -> bytes | None:
    """The bytes whose lowercase hex ``text`` is, if it is ``length`` digits of
    that form (``bytes.hex()`` gives it back exactly); None otherwise."""
    if len(text) != length:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw.hex() == text else None


def _our_call_id(call_id: str, sub_id: int) -> tuple[bytes, str] | None:
    """The 16 random bytes and the host of a Call-ID we made for ``sub_id``
    (everything after the first ``@``); None: another Call-ID."""
    prefix = label(sub_id)
    at = len(prefix) + 2 * _CALL_ID_RANDOM
    if not call_id.startswith(prefix) or call_id[at : at + 1] != "@" or at + 1 == len(call_id):
        return None
    raw = _hex_bytes(call_id[len(prefix) : at], 2 * _CALL_ID_RANDOM)
    return None if raw is None else (raw, call_id[at + 1 :])


def _doubles(layout: int) -> int:
    """How many times a resting subscription's data holds, by its layout byte."""
    count = 4 if layout & _HAS_LAST_RESUBSCRIBE else 3
    return count if layout & _REFRESH_IS_DEADLINE else count + 1


def packed_call_id(data: bytes, sub_id: int) -> str:
    """The Call-ID of resting ``sub_id``'s dialog ("" if the data is cut short:
    no NOTIFY matches it, and waking fails)."""
    end = len(data)
    if not end:
        return ""
    layout = data[0]
    offset = 1 + 8 * _doubles(layout)
    call_random = ""
    if layout & _OUR_CALL_ID:
        if offset + _CALL_ID_RANDOM > end:
            return ""
        call_random = data[offset : offset + _CALL_ID_RANDOM].hex()
        offset += _CALL_ID_RANDOM
    if layout & _OUR_TAG:
        offset += _TAG_RANDOM
    skipped = 0
    while skipped < _COUNTS:
        if offset >= end:
            return ""
        if data[offset] < 0x80:
            skipped += 1
        offset += 1
    first = unpack_first(data, offset)
    return f"{label(sub_id)}{call_random}@{first}" if call_random else first


def packed_deadline(data: bytes) -> float:
    """The deadline a resting subscription's timer entry is armed with."""
    return float(_DOUBLE.unpack_from(data, 1)[0])
