"""What the store keeps of one dialog: a plain record, independent of the engine.

The shard turns its own dialog and subscription objects into a ``DialogRecord``
when something worth keeping changed, and back after a restart; the store never
sees an engine class, so either side can change without the other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

__all__ = ["CSEQ_BLOCK", "Change", "DialogKey", "DialogRecord"]

#: (package, record, subscriber): one SIP dialog per key, as the shard keeps them.
DialogKey = tuple[str, str, str]

#: Local CSeqs reserved per write of the high-water mark. A dialog refreshed once
#: an hour needs a new block every 64 hours; an owner that took over starts above
#: the mark, so it never repeats a CSeq its predecessor may have sent.
CSEQ_BLOCK = 64


class Change(enum.Enum):
    """Why a record is written; decides how soon it reaches the database."""

    #: Written before the first SUBSCRIBE leaves (synchronously).
    CREATED = "created"
    #: Route set or remote target changed: a restart must send to the new one.
    ROUTE = "route"
    #: The dialog ended: the row goes (synchronously).
    TERMINATED = "terminated"
    #: The first 2xx or NOTIFY: flushed at once, without waiting for the interval.
    CONFIRMED = "confirmed"
    #: A refresh was granted (new expiry): flushed at once.
    REFRESHED = "refreshed"
    #: Anything else (a new status, the next refresh time): batched.
    ROUTINE = "routine"

    @property
    def synchronous(self) -> bool:
        """Must be durable before the shard acts on it (sends, forgets)."""
        return self in (Change.CREATED, Change.ROUTE, Change.TERMINATED)

    @property
    def urgent(self) -> bool:
        """Flushed at the next opportunity instead of at the end of the interval."""
        return self in (Change.CONFIRMED, Change.REFRESHED) or self.synchronous


@dataclass(frozen=True, slots=True)
class DialogRecord:
    """One dialog as stored. Times are Unix seconds (wall clock), because they
    must mean the same thing to the next process, or the next host."""

    package: str
    record: str
    subscriber: str
    call_id: str
    local_tag: str
    #: None until the dialog is confirmed.
    remote_tag: str | None
    #: The last local CSeq used (Dialog.local_cseq).
    local_cseq: int
    #: Route URIs in the order requests visit them.
    route_set: tuple[str, ...]
    remote_target: str
    #: When the subscription the notifier granted runs out.
    expires_at: float
    #: When the shard means to send the next refresh.
    refresh_at: float
    #: The last status delivered, as the shard encoded it (opaque to the store).
    last_status: bytes | None
    #: The node that wrote the record last (set by the store when it writes).
    owner: str = ""
    #: Highest local CSeq reserved in the store; no CSeq above it may be sent
    #: before a new block is written (see ``CSEQ_BLOCK``).
    cseq_high: int = 0

    @property
    def key(self) -> DialogKey:
        return (self.package, self.record, self.subscriber)

    def with_cseq_reserved(self, cseq: int) -> DialogRecord:
        """This record with a block of CSeqs reserved above ``cseq``."""
        return replace(self, cseq_high=max(self.cseq_high, cseq + CSEQ_BLOCK))

    def adopted(self) -> DialogRecord:
        """As a new owner must resume it: the next CSeq lies above anything any
        earlier owner may have sent (Dialog.build_request adds one first)."""
        return replace(self, local_cseq=max(self.local_cseq, self.cseq_high))
