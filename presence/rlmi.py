"""The Resource List Meta-Information document (RFC 4662, ``application/rlmi+xml``).

The root part of a list NOTIFY: which list, which version of its state, whether
it is the full state or only what changed, and for each resource its URI, its
names and its instances (one per back-end subscription the list server holds),
each with a state and, when there is one, the Content-ID of the body part
that carries the resource's own document.

``version`` and ``fullState`` are what the list's state is tracked by, so a
document without a readable pair is refused (``not-rlmi``); everything else is
read leniently, as in the other readers.
"""

from __future__ import annotations

from typing import Final, Unpack

import msgspec

from .document import Note
from .multipart import normalize_cid
from .xmlsafe import (
    XML_LANG,
    BodyError,
    Element,
    Limits,
    int_attr,
    read_document,
)

__all__ = [
    "RLMI_NS",
    "RlmiInstance",
    "RlmiList",
    "RlmiResource",
    "parse_rlmi",
]

RLMI_NS: Final = "urn:ietf:params:xml:ns:rlmi"
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}


class RlmiInstance(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One ``<instance>``: ``state`` active, pending or terminated; ``reason`` when
    terminated (RFC 6665's reasons); ``cid`` names the part holding its document,
    without angle brackets or a ``cid:`` prefix."""

    id: str
    state: str
    reason: str | None = None
    cid: str | None = None


class RlmiResource(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One ``<resource>``; ``names`` are its display names (a Note is text + lang)."""

    uri: str
    names: tuple[Note, ...] = ()
    instances: tuple[RlmiInstance, ...] = ()


class RlmiList(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The whole document: the list's URI, ``version`` (counts notifications, +1 each)
    and ``full_state`` (False: only the resources that changed are listed)."""

    uri: str
    version: int
    full_state: bool
    names: tuple[Note, ...] = ()
    resources: tuple[RlmiResource, ...] = ()


def parse_rlmi(body: bytes, **limits: Unpack[Limits]) -> RlmiList:
    """Parse one RLMI document, or raise BodyError; never anything else."""
    root = read_document(body, RLMI_NS, "list", "rlmi", **limits)
    version = int_attr(root, "version")
    if version is None:
        raise BodyError("not-rlmi", "the list has no readable version")
    full_state = _BOOLEANS.get(root.attrs.get("fullState", "").strip())
    if full_state is None:
        raise BodyError("not-rlmi", "the list has no readable fullState")
    ns = root.uri
    return RlmiList(
        uri=root.attrs.get("uri", ""),
        version=version,
        full_state=full_state,
        names=_names(root, ns),
        resources=tuple(
            RlmiResource(
                uri=r.attrs.get("uri", ""),
                names=_names(r, ns),
                instances=tuple(_instance(i) for i in r.named(ns, "instance")),
            )
            for r in root.named(ns, "resource")
        ),
    )


def _names(e: Element, ns: str) -> tuple[Note, ...]:
    return tuple(Note(n.text, n.attrs.get(XML_LANG)) for n in e.named(ns, "name") if n.text)


def _instance(i: Element) -> RlmiInstance:
    return RlmiInstance(
        id=i.attrs.get("id", ""),
        state=i.attrs.get("state", "").strip(),
        reason=i.attrs.get("reason"),
        cid=normalize_cid(i.attrs.get("cid")),
    )
