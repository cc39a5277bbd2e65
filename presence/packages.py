"""Which document each event package's NOTIFYs carry, and how it is read.

The dispatcher (``body.decode``) and the list tracker look media types up here;
``PackageDocument`` is the tagged union a status carries for every package but
presence (whose PIDF keeps its own untagged ``Presentity`` field on the wire).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from .dialoginfo import DialogInfo, parse_dialog_info
from .reginfo import RegInfo, parse_reginfo
from .summary import MessageSummary, parse_message_summary
from .watcherinfo import WatcherInfo, parse_watcherinfo

__all__ = [
    "DOCUMENT_TYPES",
    "PACKAGE_TYPES",
    "DocumentType",
    "PackageDocument",
    "default_type",
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
