"""From a NOTIFY's Content-Type and body to what a Status carries.

The original fed every non-empty body to its PIDF parser whatever the
Content-Type said, and dropped the NOTIFY silently when that failed. Here the
Content-Type decides, a failure is reported as text, and the caller delivers
the raw body alongside it so the consumer loses nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import msgspec

from .document import Presentity
from .pidf import PidfError, parse_pidf

__all__ = [
    "CACHE_BYTES",
    "CACHE_ENTRIES",
    "CACHE_MAX_ENTRY",
    "PIDF_CONTENT_TYPES",
    "cache_weight",
    "clear_cache",
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
_cache: OrderedDict[bytes, tuple[tuple[Presentity | None, str], int]] = OrderedDict()
_cache_bytes = 0
_weigher: Final = msgspec.msgpack.Encoder()


def clear_cache() -> None:
    """Forget every parsed document (tests, and a reload that changes the parser)."""
    global _cache_bytes
    _cache.clear()
    _cache_bytes = 0


def cache_weight(body: bytes, result: tuple[Presentity | None, str]) -> int:
    """What one entry costs the cache: the body, the parsed document and the error."""
    presentity, error = result
    parsed = 0 if presentity is None else len(_weigher.encode(presentity))
    return len(body) + parsed + len(error)


def _parse(body: bytes) -> tuple[Presentity | None, str]:
    global _cache_bytes
    hit = _cache.get(body)
    if hit is not None:
        _cache.move_to_end(body)
        return hit[0]
    try:
        result: tuple[Presentity | None, str] = (parse_pidf(body), "")
    except PidfError as e:
        result = (None, f"pidf: {e}")
    if len(body) <= CACHE_MAX_ENTRY:
        weight = cache_weight(body, result)
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
