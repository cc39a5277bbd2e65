"""The registration event package's document (RFC 3680, ``application/reginfo+xml``).

A consumer of ``Event: reg`` wants to know where an address of record is
registered: its registrations, each with its contacts, their state and the
event that last changed them (registered, refreshed, expired...).

Lenient like the other readers: unreadable numbers give None, unknown state
and event values are kept as they are, a missing attribute gives "".
"""

from __future__ import annotations

from typing import Final, Unpack

import msgspec

from .xmlsafe import (
    Element,
    Limits,
    int_attr,
    read_document,
)

__all__ = [
    "REGINFO_NS",
    "RegContact",
    "RegInfo",
    "Registration",
    "parse_reginfo",
]

REGINFO_NS: Final = "urn:ietf:params:xml:ns:reginfo"


class RegContact(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One ``<contact>``: ``state`` active or terminated, ``event`` what changed it
    (registered, created, refreshed, shortened, expired, deactivated, probation,
    unregistered, rejected). ``expires`` and ``duration_registered`` are seconds."""

    id: str
    state: str = ""
    event: str = ""
    uri: str = ""
    display_name: str | None = None
    expires: int | None = None
    duration_registered: int | None = None
    retry_after: int | None = None
    q: str | None = None  # as written: a qvalue is a string in RFC 3680's schema
    call_id: str | None = None
    cseq: int | None = None


class Registration(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One ``<registration>`` of an address of record; ``state`` is init, active
    or terminated."""

    aor: str
    id: str = ""
    state: str = ""
    contacts: tuple[RegContact, ...] = ()


class RegInfo(msgspec.Struct, tag="reginfo", frozen=True, gc=False, omit_defaults=True):
    """The whole document; ``state`` is ``full`` or ``partial``."""

    state: str = "full"
    version: int | None = None
    registrations: tuple[Registration, ...] = ()


def parse_reginfo(body: bytes, **limits: Unpack[Limits]) -> RegInfo:
    """Parse one reginfo document, or raise BodyError; never anything else."""
    root = read_document(body, REGINFO_NS, "reginfo", "reginfo", **limits)
    ns = root.uri
    return RegInfo(
        state=root.attrs.get("state", "full").strip(),
        version=int_attr(root, "version"),
        registrations=tuple(
            Registration(
                aor=r.attrs.get("aor", ""),
                id=r.attrs.get("id", ""),
                state=r.attrs.get("state", "").strip(),
                contacts=tuple(_contact(c, ns) for c in r.named(ns, "contact")),
            )
            for r in root.named(ns, "registration")
        ),
    )


def _contact(c: Element, ns: str) -> RegContact:
    uri = c.first(ns, "uri")
    display_name = c.first(ns, "display-name")
    return RegContact(
        id=c.attrs.get("id", ""),
        state=c.attrs.get("state", "").strip(),
        event=c.attrs.get("event", "").strip(),
        uri="" if uri is None else uri.text,
        display_name=None if display_name is None else display_name.text,
        expires=int_attr(c, "expires"),
        duration_registered=int_attr(c, "duration-registered"),
        retry_after=int_attr(c, "retry-after"),
        q=c.attrs.get("q"),
        call_id=c.attrs.get("callid"),
        cseq=int_attr(c, "cseq"),
    )
