"""From a NOTIFY's Content-Type and body to what a Status carries.

The original fed every non-empty body to its PIDF parser whatever the
Content-Type said, and dropped the NOTIFY silently when that failed. Here the
Content-Type decides, a failure is reported as text, and the caller delivers
the raw body alongside it so the consumer loses nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from .document import Presentity
from .pidf import PidfError, parse_pidf

__all__ = [
    "CACHE_BYTES",
    "CACHE_ENTRIES",
    "PIDF_CONTENT_TYPES",
    "clear_cache",
    "decode_body",
    "media_type",
]

#: Parsed documents remembered, most recently used first out last. A refresh
#: NOTIFY repeats the body of the one before, and watchers of one presentity get
#: the same body: those are parsed once. Presentity is frozen, so sharing is safe.
CACHE_ENTRIES: Final = 1024
#: Bound on the bodies' bytes held by the cache; larger bodies are never kept.
CACHE_BYTES: Final = 1 << 20
_CACHE_MAX_BODY: Final = 16 * 1024
_cache: OrderedDict[bytes, tuple[Presentity | None, str]] = OrderedDict()
_cache_bytes = 0


def clear_cache() -> None:
    """Forget every parsed document (tests, and a reload that changes the parser)."""
    global _cache_bytes
    _cache.clear()
    _cache_bytes = 0


def _parse(body: bytes) -> tuple[Presentity | None, str]:
    global _cache_bytes
    hit = _cache.get(body)
    if hit is not None:
        _cache.move_to_end(body)
        return hit
    try:
        result: tuple[Presentity | None, str] = (parse_pidf(body), "")
    except PidfError as e:
        result = (None, f"pidf: {e}")
    size = len(body)
    if size <= _CACHE_MAX_BODY:
        _cache[body] = result
        _cache_bytes += size
        while len(_cache) > CACHE_ENTRIES or _cache_bytes > CACHE_BYTES:
            old, _ = _cache.popitem(last=False)
            _cache_bytes -= len(old)
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
    """(presentity, error) for one NOTIFY body; never raises.

    An empty (or all-whitespace) body is "no document", not an error: Kamailio
    sends exactly that for a presentity that never published.
    """
    try:
        if not body.strip(_XML_WS):
            return None, ""
        mtype = media_type(content_type)
        if not mtype:
            # Some notifiers omit the header; the original never looked at it.
            if not body.removeprefix(_UTF8_BOM).lstrip(_XML_WS).startswith(b"<"):
                return None, "body without a content type, and it is not XML"
        elif mtype not in PIDF_CONTENT_TYPES:
            return None, f"unsupported content type {mtype}"
        return _parse(body)
    except Exception as e:  # a parser bug must cost one status, not the dialog
        return None, f"pidf: unexpected failure ({type(e).__name__})"
