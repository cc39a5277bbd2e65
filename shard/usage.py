"""A subscription together with its SIP side: the dialog usage of reSIProcate's DUM.

The state machine (:class:`Subscription`) stays free of SIP objects; the
engine's fields are slots of the same object rather than a second object that
points at it, which saves an object and a reference per subscription (there
may be a million).
"""

from __future__ import annotations

import random

from ..presence.resourcelist import ListTracker
from ..sip.dialog import Dialog
from .auth import ClientAuth
from .subscription import MachineParams, State, Subscription

__all__ = ["Usage"]


class Usage(Subscription):
    """One subscription, its dialog, and what the engine's timer queue and
    observer know of it (the deadline armed, the state counted).

    ``package`` is the event package the dialog speaks (RFC 6665 §7.2);
    ``lists`` is made on the first ``multipart/related`` NOTIFY, when the
    record turns out to be a resource list (RFC 4662), and reset with each
    new dialog: versions start again. ``auth`` is made on the first challenge
    and kept across dialogs (a nonce is not bound to one). ``cseq_high`` is
    the CSeq mark of the dialog store (store/record.py): no CSeq above it is
    sent before a higher mark was asked for."""

    __slots__ = ("armed_at", "auth", "counted", "cseq_high", "dialog", "lists", "package")

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
