"""The watcher information document (RFC 3857, ``application/watcherinfo+xml``).

A consumer of ``Event: presence.winfo`` (or any ``*.winfo`` template package)
wants to know who is watching a resource and whether they are allowed to:
watcher lists, one per watched resource and package, and the watchers with
their status (pending, active, waiting, terminated) and the event that put
them there (subscribe, approved, rejected, timeout...).

Lenient like the other readers: unreadable numbers give None, unknown status
and event values are kept as they are, a missing attribute gives "".
"""

from __future__ import annotations

from typing import Final, Unpack

import msgspec

from .xmlsafe import (
    XML_LANG,
    Element,
    Limits,
    int_attr,
    read_document,
)

__all__ = [
    "WATCHERINFO_NS",
    "Watcher",
    "WatcherInfo",
    "WatcherList",
    "parse_watcherinfo",
]

WATCHERINFO_NS: Final = "urn:ietf:params:xml:ns:watcherinfo"


class Watcher(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One ``<watcher>``: ``uri`` is its text, the watcher's address."""

    id: str
    status: str = ""
    event: str = ""
    uri: str = ""
    display_name: str | None = None
    lang: str | None = None
    expiration: int | None = None
    duration_subscribed: int | None = None


class WatcherList(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The watchers of one ``resource`` for one event ``package``."""

    resource: str
    package: str = ""
    watchers: tuple[Watcher, ...] = ()


class WatcherInfo(msgspec.Struct, tag="watcherinfo", frozen=True, gc=False, omit_defaults=True):
    """The whole document; ``state`` is ``full`` or ``partial``."""

    state: str = "full"
    version: int | None = None
    lists: tuple[WatcherList, ...] = ()


def parse_watcherinfo(body: bytes, **limits: Unpack[Limits]) -> WatcherInfo:
    """Parse one watcherinfo document, or raise BodyError; never anything else."""
    root = read_document(body, WATCHERINFO_NS, "watcherinfo", "watcherinfo", **limits)
    ns = root.uri
    return WatcherInfo(
        state=root.attrs.get("state", "full").strip(),
        version=int_attr(root, "version"),
        lists=tuple(
            WatcherList(
                resource=wl.attrs.get("resource", ""),
                package=wl.attrs.get("package", ""),
                watchers=tuple(_watcher(w) for w in wl.named(ns, "watcher")),
            )
            for wl in root.named(ns, "watcher-list")
        ),
    )


def _watcher(w: Element) -> Watcher:
    return Watcher(
        id=w.attrs.get("id", ""),
        status=w.attrs.get("status", "").strip(),
        event=w.attrs.get("event", "").strip(),
        uri=w.text,
        display_name=w.attrs.get("display-name"),
        lang=w.attrs.get(XML_LANG),
        expiration=int_attr(w, "expiration"),
        duration_subscribed=int_attr(w, "duration-subscribed"),
    )
