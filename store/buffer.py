"""The write-behind buffer: changes wait here, one per dialog, until a batch goes.

Pure bookkeeping with an injected clock, so the rules are tested without a
database or an event loop: a newer change of a dialog replaces the older one
(each record is the whole state, so only the last counts), a batch is due
``interval`` seconds after its first change or at once after an urgent one,
and ``take`` hands everything over in one go. What is in the buffer when the
process dies is lost: at most one interval's worth, by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .record import Change, DialogKey, DialogRecord

__all__ = ["RETRY_AFTER", "Batch", "WriteBehind"]

#: Seconds at least before a batch that failed is tried again, however short the
#: interval: a database that is away is not asked again in a tight loop.
RETRY_AFTER = 1.0


@dataclass(slots=True)
class Batch:
    """What one transaction writes: rows to upsert and keys to delete."""

    upserts: dict[DialogKey, DialogRecord] = field(default_factory=dict)
    deletes: set[DialogKey] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)

    def touched(self) -> set[DialogKey]:
        return set(self.upserts) | self.deletes


class WriteBehind:
    """Coalesces changes per dialog; says when the next batch is due."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.interval = interval
        self._clock = clock
        self._batch = Batch()
        self._due: float | None = None
        #: Changes replaced by a newer one before they were written.
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._batch)

    def put(self, record: DialogRecord, change: Change = Change.ROUTINE) -> None:
        """Keep ``record`` as the newest state of its dialog."""
        key = record.key
        if key in self._batch.upserts or key in self._batch.deletes:
            self.coalesced += 1
        self._batch.deletes.discard(key)
        self._batch.upserts[key] = record
        self._arm(change)

    def delete(self, key: DialogKey, change: Change = Change.TERMINATED) -> None:
        """The dialog is gone: its row goes, whatever was waiting for it."""
        if key in self._batch.upserts or key in self._batch.deletes:
            self.coalesced += 1
        self._batch.upserts.pop(key, None)
        self._batch.deletes.add(key)
        self._arm(change)

    def _arm(self, change: Change) -> None:
        now = self._clock()
        due = now if change.urgent else now + self.interval
        if self._due is None or due < self._due:
            self._due = due

    def next_deadline(self) -> float | None:
        """When the next batch is due (None: nothing waits)."""
        return self._due

    def is_due(self) -> bool:
        return self._due is not None and self._clock() >= self._due

    def take(self) -> Batch:
        """Everything waiting, as one batch; the buffer is empty afterwards."""
        batch, self._batch, self._due = self._batch, Batch(), None
        return batch

    def give_back(self, batch: Batch) -> None:
        """A batch that could not be written goes back under any newer change,
        due again after one interval, and not before ``RETRY_AFTER``."""
        for key, record in batch.upserts.items():
            if key not in self._batch.upserts and key not in self._batch.deletes:
                self._batch.upserts[key] = record
        for key in batch.deletes:
            if key not in self._batch.upserts:
                self._batch.deletes.add(key)
        if len(self._batch):
            retry = self._clock() + max(self.interval, RETRY_AFTER)
            self._due = retry if self._due is None else max(self._due, retry)
