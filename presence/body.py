"""From a NOTIFY's Content-Type and body to what a Status carries.

The original fed every non-empty body to its PIDF parser whatever the
Content-Type said, and dropped the NOTIFY silently when that failed. Here the
Content-Type decides, a failure is reported as text, and the caller delivers
the raw body alongside it so the consumer loses nothing.
"""

from __future__ import annotations

from typing import Final

from .document import Presentity
from .pidf import PidfError, parse_pidf

__all__ = ["PIDF_CONTENT_TYPES", "decode_body", "media_type"]

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
        return parse_pidf(body), ""
    except PidfError as e:
        return None, f"pidf: {e}"
    except Exception as e:  # a parser bug must cost one status, not the dialog
        return None, f"pidf: unexpected failure ({type(e).__name__})"
