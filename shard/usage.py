"""A subscription together with its SIP side: the dialog usage of reSIProcate's DUM.

The state machine (:class:`Subscription`) stays free of SIP objects; the
engine's fields are slots of the same object rather than a second object that
points at it, which saves an object and a reference per subscription (there
may be a million).
"""

from __future__ import annotations

import random

from ..sip.dialog import Dialog
from .subscription import MachineParams, State, Subscription

__all__ = ["Usage"]


class Usage(Subscription):
    """One subscription, its dialog, and what the engine's timer queue and
    observer know of it (the deadline armed, the state counted)."""

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
        self.counted: State | None = None  # the state the observer last counted it in
