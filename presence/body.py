"""From a NOTIFY's event package, Content-Type and body to what a Status carries.

The original fed every non-empty body to its PIDF parser whatever the
Content-Type said, and dropped the NOTIFY silently when that failed. Here the
Content-Type decides, a failure is reported as text, and the caller delivers
the raw body alongside it so the consumer loses nothing.

``decode_body`` is the presence package's path, unchanged and cached (it is the
hot path); ``decode`` generalises it to every package: dialog-info, reginfo,
message-summary and watcherinfo documents are parsed, any other type is
delivered raw without an error. Resource lists (multipart/related) need the
state of their subscription and go through ``resourcelist.ListTracker``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, NamedTuple

import msgspec

from .document import Presentity
from .packages import DOCUMENT_TYPES, PackageDocument, default_type
from .pidf import PidfError, parse_pidf
from .xmlsafe import BodyError

__all__ = [
    "CACHE_BYTES",
    "CACHE_ENTRIES",
    "CACHE_MAX_ENTRY",
    "PIDF_CONTENT_TYPES",
    "Decoded",
    "cache_weight",
    "clear_cache",
    "decode",
    "decode_body",
    "media_type",
]

#: Parsed documents remembered, most recently used first out last. A refresh
#: NOTIFY repeats the body of the one before, and watchers of one presentity get
#: the same body: those are parsed once. Presentity is frozen, so sharing is safe.
CACHE_ENTRIES: Final = 1024
#: Bound on what the cache holds, counted per entry as the body's bytes plus the
#: parsed document's (its msgpack size, which follows every string in it): a
#: small body can parse into much more text (extensions re-declare namespaces).
CACHE_BYTES: Final = 1 << 20
#: Entries weighing more are never kept.
CACHE_MAX_ENTRY: Final = 32 * 1024
_Pidf = tuple[Presentity | None, str, str]  # presentity, error, error kind
_cache: OrderedDict[bytes, tuple[_Pidf, int]] = OrderedDict()
_cache_bytes = 0
_weigher: Final = msgspec.msgpack.Encoder()


def clear_cache() -> None:
    """Forget every parsed document (tests, and a reload that changes the parser)."""
    global _cache_bytes
    _cache.clear()
    _cache_bytes = 0


def cache_weight(body: bytes, presentity: Presentity | None, error: str) -> int:
    """What one entry costs the cache: the body, the parsed document and the error."""
    parsed = 0 if presentity is None else len(_weigher.encode(presentity))
    return len(body) + parsed + len(error)


def _parse(body: bytes) -> _Pidf:
    global _cache_bytes
    hit = _cache.get(body)
    if hit is not None:
        _cache.move_to_end(body)
        return hit[0]
    try:
        result: _Pidf = (parse_pidf(body), "", "")
    except PidfError as e:
        result = (None, f"pidf: {e}", e.kind)
    if len(body) <= CACHE_MAX_ENTRY:
        weight = cache_weight(body, result[0], result[1])
        if weight <= CACHE_MAX_ENTRY:
            _cache[body] = (result, weight)
            _cache_bytes += weight
            while len(_cache) > CACHE_ENTRIES or _cache_bytes > CACHE_BYTES:
                _, (_, old_weight) = _cache.popitem(last=False)
                _cache_bytes -= old_weight
    return result


PIDF_CONTENT_TYPES: Final = frozenset(("application/pidf+xml", "application/cpim-pidf+xml"))
_XML_WS: Final = b" \t\r\n"
_UTF8_BOM: Final = b"\xef\xbb\xbf"


def media_type(content_type: str | None) -> str:
    """``type/subtype`` in lower case, parameters dropped; "" when absent."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip(" \t").lower()


def decode_body(content_type: str | None, body: bytes) -> tuple[Presentity | None, str]:
    """(presentity, error) for one presence NOTIFY body; never raises.

    An empty (or all-whitespace) body is "no document", not an error: Kamailio
    sends exactly that for a presentity that never published.
    """
    return _decode_presence(content_type, body)[:2]


def _decode_presence(content_type: str | None, body: bytes) -> _Pidf:
    try:
        if not body.strip(_XML_WS):
            return _NO_PIDF
        mtype = media_type(content_type)
        if not mtype:
            # Some notifiers omit the header; the original never looked at it.
            if not body.removeprefix(_UTF8_BOM).lstrip(_XML_WS).startswith(b"<"):
                return None, "body without a content type, and it is not XML", "not-xml"
        elif mtype not in PIDF_CONTENT_TYPES:
            return None, f"unsupported content type {mtype}", "unsupported-type"
        return _parse(body)
    except Exception as e:  # a parser bug must cost one status, not the dialog
        return None, f"pidf: unexpected failure ({type(e).__name__})", "internal"


_NO_PIDF: Final[_Pidf] = (None, "", "")


class Decoded(NamedTuple):
    """What one body gives a status. At most one of ``presentity`` (PIDF) and
    ``document`` (any other package's document) is set; ``error`` says why
    neither is although the body was meant to be read, and ``error_kind`` is its
    short stable form for metrics: a BodyError kind (``too-large``, ``not-xml``,
    ...), ``unsupported-type`` or ``internal``."""

    presentity: Presentity | None = None
    document: PackageDocument | None = None
    error: str = ""
    error_kind: str = ""


_NOTHING: Final = Decoded()


def decode(package: str, content_type: str | None, body: bytes) -> Decoded:
    """Read one NOTIFY body of any event package; never raises.

    ``presence`` behaves exactly as :func:`decode_body`. For other packages the
    Content-Type picks the reader (the package's usual type when the header is
    absent); a type without a reader is not an error: the body travels raw.
    """
    if package == "presence" or package.lower() == "presence":
        presentity, error, kind = _decode_presence(content_type, body)
        return Decoded(presentity, None, error, kind)
    label = "body"
    try:
        if not body.strip(_XML_WS):
            return _NOTHING
        mtype = media_type(content_type) or default_type(package)
        if mtype in PIDF_CONTENT_TYPES:
            presentity, error, kind = _parse(body)
            return Decoded(presentity, None, error, kind)
        reader = DOCUMENT_TYPES.get(mtype)
        if reader is None:
            return _NOTHING
        label = reader.label
        try:
            return Decoded(None, reader.parse(body))
        except BodyError as refused:
            return Decoded(None, None, f"{label}: {refused}", refused.kind)
    except Exception as e:  # a parser bug must cost one status, not the dialog
        return Decoded(None, None, f"{label}: unexpected failure ({type(e).__name__})", "internal")
