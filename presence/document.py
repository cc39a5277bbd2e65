"""Parsed presence document (RFC 3863 PIDF), as the status message carries it.

The shape follows the original module's ``presentity_info_t``: entity, tuples
with id/contact/priority/basic/notes, top-level notes, and every other element
kept as XML text so that nothing the presence server said is lost.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Basic = Literal["open", "closed"]


class Note(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A ``<note>``; ``lang`` is its ``xml:lang`` when given."""

    text: str
    lang: str | None = None


class PresenceTuple(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One ``<tuple>``. ``basic`` is None when the tuple's status has no ``<basic>``."""

    id: str
    basic: Basic | None = None
    contact: str | None = None
    priority: float | None = None
    timestamp: str | None = None
    notes: tuple[Note, ...] = ()
    extensions: tuple[str, ...] = ()


class Presentity(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The whole document: what a consumer needs to decide "is this person there"."""

    entity: str
    tuples: tuple[PresenceTuple, ...] = ()
    notes: tuple[Note, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def basic(self) -> Basic | None:
        """The overall basic status: open if any tuple is open (RFC 3863 §4.1.4 leaves
        aggregation to the watcher; "any open" is what presence UIs show)."""
        seen: Basic | None = None
        for t in self.tuples:
            if t.basic == "open":
                return "open"
            if t.basic == "closed":
                seen = "closed"
        return seen
