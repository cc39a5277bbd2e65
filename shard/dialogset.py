"""Which subscription a NOTIFY belongs to, and whether it is valid (DUM's dialog set).

Dialogs are found by Call-ID alone: ours are 128 random bits, new for every
dialog, so the local tag (checked on lookup) need not be part of the key.
Our Call-IDs name their dialog's id (:mod:`.call_id`), so the set is the
engine's table of subscriptions by id, and only dialogs whose Call-ID names
no id of theirs (restored under another id) are kept by Call-ID.
Matching follows RFC 6665 §4.1.2.4 and §8.2.1: Call-ID, our tag in To, the
notifier's tag in From once known, and the Event package and ``id``; our
SUBSCRIBEs carry no ``id``, so a NOTIFY with one is not ours. The checks run
in the order of the hot path's costs: the common NOTIFY parses only its tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..id_map import IdMap
from ..packed_map import PackedIdMap
from ..sip.dialog import CSeqOutOfOrder
from ..sip.headers import parse_event, parse_subscription_state, parse_tag
from ..sip.message import Request, SipParseError
from .call_id import dialog_id_in
from .observer import EngineObserver
from .output import valid_text
from .subscription import NotifyInfo
from .usage import RestingUsage, Usage, packed_call_id

__all__ = ["PACKAGE", "DialogSet", "NotifyMatch"]

PACKAGE = "presence"
_SUB_STATE_CACHE = 256  # distinct Subscription-State values remembered
# A Subscription-State value's parse: the NotifyInfo for an in-order NOTIFY and
# the one for an out-of-order NOTIFY (frozen, so every NOTIFY with that value
# shares them).
_SubState = tuple[NotifyInfo, NotifyInfo]


#: (code, reason, usage, info): the answer to a NOTIFY; ``usage`` and ``info``
#: are set when it is ours. A plain tuple: one per NOTIFY, on the hot path.
NotifyMatch = tuple[int, str, Usage | None, NotifyInfo | None]

_NO_DIALOG: NotifyMatch = (481, "Subscription Does Not Exist", None, None)


def _refuse(code: int, reason: str) -> NotifyMatch:
    return code, reason, None, None


class DialogSet:
    """The live dialogs of one shard: a usage's dialog is in the set from
    :meth:`add` until :meth:`forget` (``usage.dialog`` set meanwhile)."""

    __slots__ = ("_obs", "_others", "_rest_data", "_sub_states", "_usages", "_wake")

    def __init__(
        self,
        observer: EngineObserver,
        usages: IdMap[Usage | RestingUsage],
        wake: Callable[[RestingUsage], Usage | None] | None = None,
        rest_data: PackedIdMap | None = None,
    ) -> None:
        #: The engine's subscriptions by id: where our Call-IDs lead.
        self._usages = usages
        #: Dialogs whose Call-ID names no id of theirs, by Call-ID.
        self._others: dict[str, Usage | RestingUsage] = {}
        self._sub_states: dict[str, _SubState] = {}
        self._obs = observer
        #: How the engine wakes a resting subscription a NOTIFY is for.
        self._wake = wake
        #: The packed data of the resting ones, by id (the engine's).
        self._rest_data = rest_data

    @property
    def by_call_id(self) -> int:
        """How many dialogs are kept by Call-ID (their Call-ID names no id of theirs)."""
        return len(self._others)

    def add(self, usage: Usage) -> None:
        """Index the usage's (new) dialog."""
        assert usage.dialog is not None
        call_id = usage.dialog.call_id
        if dialog_id_in(call_id) != usage.sub_id:
            self._others[call_id] = usage

    def swap(self, old: Usage | RestingUsage, new: Usage | RestingUsage | None) -> None:
        """The subscription ``old`` went to rest or woke as ``new`` (None: it
        could not wake and is gone, later NOTIFYs get 481), in the engine's
        table already: a Call-ID kept here leads there too, if it led to ``old``."""
        if not self._others:
            return
        call_id = self._call_id_of(old)
        if call_id is None or self._others.get(call_id) is not old:
            return
        if new is None:
            del self._others[call_id]
        else:
            self._others[call_id] = new

    def find(self, call_id: str) -> Usage | RestingUsage | None:
        """The subscription whose dialog has ``call_id``, resting or awake; a
        NOTIFY for one gets a transaction."""
        did = dialog_id_in(call_id)
        if did is not None:
            found = self._usages.get(did)
            if found is not None and self._call_id_of(found) == call_id:
                return found
        return self._others.get(call_id) if self._others else None

    def forget(self, usage: Usage) -> None:
        """Drop the usage's dialog: later NOTIFYs for it get 481."""
        d = usage.dialog
        if d is not None:
            if self._others and self._others.get(d.call_id) is usage:
                del self._others[d.call_id]
            usage.dialog = None

    def match_notify(
        self, req: Request, first: Mapping[str, str], found: Usage | RestingUsage | None
    ) -> NotifyMatch:
        """Validate a new NOTIFY for ``found``, what :meth:`find` found for its
        Call-ID; on success its dialog has taken the NOTIFY's CSeq and target.
        ``first`` maps each header to its first value."""
        try:
            event_value = first.get("Event", "")
            if event_value == PACKAGE:
                package, event_id = PACKAGE, None  # the usual value: nothing to parse
            else:
                event = parse_event(event_value)
                package, event_id = event.package, event.id
            to_tag = parse_tag(first["To"])
            from_tag = parse_tag(first["From"])
        except SipParseError as exc:
            self._obs.parse_error(exc.kind)
            return _refuse(400, f"Bad Request ({exc})")
        if isinstance(found, RestingUsage):
            found = None if self._wake is None else self._wake(found)
        usage = found
        if usage is None or usage.dialog is None or usage.dialog.local_tag != (to_tag or ""):
            return _NO_DIALOG
        dialog = usage.dialog
        if dialog.confirmed and from_tag != dialog.remote_tag:
            return _refuse(481, "Subscription Does Not Exist (forked)")
        if package != usage.package:
            return _refuse(489, "Bad Event")
        if event_id is not None:
            return _refuse(481, "Subscription Does Not Exist (Event id)")
        state_value = first.get("Subscription-State")
        if state_value is None:
            self._obs.parse_error("missing-header")
            return _refuse(400, "Missing Subscription-State")
        try:
            in_order_info, late_info = self._subscription_state(state_value)
            if dialog.confirmed:
                in_order = dialog.update_from_request(req)
            else:
                dialog.confirm_from_notify(req)
                in_order = True
        except CSeqOutOfOrder as late:
            return _refuse(500, f"Server Internal Error ({late})")
        except SipParseError as exc:
            self._obs.parse_error(exc.kind)
            return _refuse(400, f"Bad Request ({exc})")
        self._obs.notify_received(in_order_info.state)
        return 200, "OK", usage, in_order_info if in_order else late_info

    def _subscription_state(self, value: str) -> _SubState:
        """Subscription-State as the NotifyInfo of an in-order and of an out-of-order
        NOTIFY. Notifiers repeat a handful of values (``active;expires=3600``), so
        parses are kept in a small dict, emptied when full so that a peer cannot
        grow it."""
        cached = self._sub_states.get(value)
        if cached is None:
            s = parse_subscription_state(value)
            reason = None if s.reason is None else valid_text(s.reason)
            cached = (
                NotifyInfo(s.value, reason, s.expires, s.retry_after, True),
                NotifyInfo(s.value, reason, s.expires, s.retry_after, False),
            )
            if len(self._sub_states) >= _SUB_STATE_CACHE:
                self._sub_states.clear()
            self._sub_states[value] = cached
        return cached


    def _call_id_of(self, usage: Usage | RestingUsage) -> str | None:
        if isinstance(usage, RestingUsage):
            data = None if self._rest_data is None else self._rest_data.get(usage.sub_id)
            return None if data is None else packed_call_id(data, usage.sub_id)
        return None if usage.dialog is None else usage.dialog.call_id
