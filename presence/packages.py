"""Which document each event package's NOTIFYs carry, and how it is read.

The dispatcher (``body.decode``) and the list tracker look media types up here;
``PackageDocument`` is the tagged union a status carries for every package but
presence (whose PIDF keeps its own untagged ``Presentity`` field on the wire).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

from .dialoginfo import DialogInfo, parse_dialog_info
from .reginfo import RegInfo, parse_reginfo
from .summary import MessageSummary, parse_message_summary
from .watcherinfo import WatcherInfo, parse_watcherinfo

__all__ = [
    "DOCUMENT_TYPES",
    "LIST_TYPES",
    "PACKAGE_TYPES",
    "DocumentType",
    "PackageDocument",
    "accept_types",
    "default_type",
    "package_problem",
]

#: The parsed document of any package but presence; tagged ("type" key) on the wire.
PackageDocument = DialogInfo | RegInfo | MessageSummary | WatcherInfo


class DocumentType(NamedTuple):
    """How one media type is read: ``label`` prefixes its errors (``dialog-info: ...``)."""

    label: str
    parse: Callable[[bytes], PackageDocument]


#: Media type (lower case, no parameters) -> its reader.
DOCUMENT_TYPES: Final[dict[str, DocumentType]] = {
    "application/dialog-info+xml": DocumentType("dialog-info", parse_dialog_info),
    "application/reginfo+xml": DocumentType("reginfo", parse_reginfo),
    "application/simple-message-summary": DocumentType("message-summary", parse_message_summary),
    "application/watcherinfo+xml": DocumentType("watcherinfo", parse_watcherinfo),
}

#: Event package -> the media type its NOTIFYs carry when they omit Content-Type.
PACKAGE_TYPES: Final[dict[str, str]] = {
    "presence": "application/pidf+xml",
    "dialog": "application/dialog-info+xml",
    "reg": "application/reginfo+xml",
    "message-summary": "application/simple-message-summary",
}


def default_type(package: str) -> str:
    """The media type to assume for a body without Content-Type; "" when unknown.

    Any ``*.winfo`` template package (RFC 3857) carries watcherinfo.
    """
    package = package.lower()
    if package.endswith(".winfo"):
        return "application/watcherinfo+xml"
    return PACKAGE_TYPES.get(package, "")


#: What a list NOTIFY (RFC 4662) carries, accepted for every package: a
#: ``multipart/related`` body whose root is RLMI.
LIST_TYPES: Final = ("multipart/related", "application/rlmi+xml")

# RFC 6665 §8.4: event-type = event-package *( "." event-template ), each a
# token without dots.
_TOKEN_NODOT: Final = r"[A-Za-z0-9!%*_+`'~-]+"
_EVENT_TYPE: Final = re.compile(rf"{_TOKEN_NODOT}(?:\.{_TOKEN_NODOT})*")
MAX_PACKAGE_LENGTH: Final = 64


def package_problem(package: str) -> str:
    """Why ``package`` cannot name an Event header's package ("" when it can)."""
    if not package:
        return "the event package is empty"
    if len(package) > MAX_PACKAGE_LENGTH:
        return f"the event package is longer than {MAX_PACKAGE_LENGTH} characters"
    if not _EVENT_TYPE.fullmatch(package):
        return f"{package!r} is not an event package name (RFC 6665 event-type)"
    return ""


def accept_types(package: str) -> str:
    """The Accept header of a SUBSCRIBE for ``package``: its own document type
    first, then the list types.

    An unknown package names no type of its own: its bodies travel raw, and an
    Accept of only the list types would tell the notifier we take nothing else,
    so the header is left to the package's default (RFC 6665 §7.2: absent
    Accept means the package's default type)."""
    own = default_type(package)
    if not own:
        return ""
    return ", ".join((own, *LIST_TYPES))
