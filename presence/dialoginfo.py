"""The dialog event package's document (RFC 4235, ``application/dialog-info+xml``).

A consumer of ``Event: dialog`` wants to know which calls a user is in and in
what state (busy-lamp fields, call pickup): dialogs with their id, state,
direction and the two participants' identities. Other elements (session
descriptions, route sets, extensions) are not modelled: the raw body travels
with the status for a consumer that needs them.

Lenient where RFC 4235 is strict, as the PIDF reader is: a missing or
unreadable ``version`` gives None, a dialog without ``<state>`` gets state "",
unknown state and direction values are kept as they are (trimmed) rather than
refused.
"""

from __future__ import annotations

from typing import Final, Unpack

import msgspec

from .xmlsafe import (
    Element,
    Limits,
    int_attr,
    int_text,
    read_document,
)

__all__ = [
    "DIALOG_INFO_NS",
    "Dialog",
    "DialogInfo",
    "Participant",
    "parse_dialog_info",
]

DIALOG_INFO_NS: Final = "urn:ietf:params:xml:ns:dialog-info"


class Participant(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """``<local>`` or ``<remote>``: who, as the notifier names them."""

    identity: str | None = None
    display: str | None = None  # the identity's display attribute
    target: str | None = None  # the ``<target uri=...>``, the contact the dialog reaches


class Dialog(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One ``<dialog>``. ``state`` is trying, proceeding, early, confirmed or terminated;
    ``event`` and ``code`` say why a dialog ended (e.g. ``rejected``, 486)."""

    id: str
    state: str = ""
    event: str | None = None
    code: int | None = None
    direction: str | None = None  # initiator or recipient
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    duration: int | None = None
    local: Participant | None = None
    remote: Participant | None = None


class DialogInfo(msgspec.Struct, tag="dialog-info", frozen=True, gc=False, omit_defaults=True):
    """The whole document. ``state`` is ``full`` or ``partial`` (a partial document
    lists only the dialogs that changed since the previous ``version``)."""

    entity: str
    state: str = "full"
    version: int | None = None
    dialogs: tuple[Dialog, ...] = ()


def parse_dialog_info(body: bytes, **limits: Unpack[Limits]) -> DialogInfo:
    """Parse one dialog-info document, or raise BodyError; never anything else."""
    root = read_document(body, DIALOG_INFO_NS, "dialog-info", "dialog-info", **limits)
    ns = root.uri
    return DialogInfo(
        entity=root.attrs.get("entity", ""),
        state=root.attrs.get("state", "full").strip(),
        version=int_attr(root, "version"),
        dialogs=tuple(_dialog(d, ns) for d in root.named(ns, "dialog")),
    )


def _dialog(d: Element, ns: str) -> Dialog:
    state = d.first(ns, "state")
    local = d.first(ns, "local")
    remote = d.first(ns, "remote")
    return Dialog(
        id=d.attrs.get("id", ""),
        state="" if state is None else state.text,
        event=None if state is None else state.attrs.get("event"),
        code=None if state is None else int_attr(state, "code"),
        direction=d.attrs.get("direction"),
        call_id=d.attrs.get("call-id"),
        local_tag=d.attrs.get("local-tag"),
        remote_tag=d.attrs.get("remote-tag"),
        duration=int_text(d.first(ns, "duration")),
        local=None if local is None else _participant(local, ns),
        remote=None if remote is None else _participant(remote, ns),
    )


def _participant(p: Element, ns: str) -> Participant:
    identity = p.first(ns, "identity")
    target = p.first(ns, "target")
    return Participant(
        identity=None if identity is None else identity.text or None,
        display=None if identity is None else identity.attrs.get("display"),
        target=None if target is None else target.attrs.get("uri"),
    )
