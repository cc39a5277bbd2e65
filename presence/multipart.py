"""Splitting a ``multipart/related`` body (RFC 2387, RFC 2046) into its parts.

A resource list NOTIFY (RFC 4662) is one: the root part is the RLMI document
and every other part is a resource's own document, named by its Content-ID.
The splitter is pure and bounded: total size and part count are limited,
headers of a part are limited, and every failure is a BodyError
(``bad-multipart``, ``too-large``, ``too-many-parts``). Nested
``multipart/related`` parts are returned as they are; whoever reads them splits
them again and bounds the nesting (see ``resourcelist``).

Lenient where senders are sloppy: a preamble (and stray CRLFs) before the first
delimiter is skipped, LF alone ends a line as CRLF does, trailing blanks after a
delimiter are transport padding, a part may have no headers (or no
Content-ID), and a repeated Content-ID names its first part. Strict where it
matters: no boundary, no delimiter, or no closing delimiter (a truncated body)
is an error.
"""

from __future__ import annotations

import binascii
import re
from typing import Final
from urllib.parse import unquote

import msgspec

from .xmlsafe import BodyError, check_size

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_MULTIPART_BYTES",
    "MAX_PARTS",
    "Part",
    "Related",
    "content_type_params",
    "normalize_cid",
    "split_related",
]

#: Defaults: a list of a few hundred presence documents fits, a flood does not.
MAX_MULTIPART_BYTES: Final = 1 << 20
MAX_PARTS: Final = 1000
MAX_HEADER_BYTES: Final = 8 * 1024

_PARAM: Final = re.compile(
    r';[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^; \t]*)[ \t]*'
)
_QUOTED_PAIR: Final = re.compile(r"\\(.)")
_BLANKS: Final = b" \t"


class Part(msgspec.Struct, frozen=True, gc=False):
    """One body part: its media type (as written, parameters included; "" when the
    part had no Content-Type), its Content-ID (normalised, None when absent) and
    its body, transfer-decoded for base64 and quoted-printable."""

    content_type: str
    content_id: str | None
    body: bytes


class Related(msgspec.Struct, frozen=True, gc=False):
    """The parts in order, and the root: the part ``start=`` names, else the first."""

    root: Part
    parts: tuple[Part, ...]
    by_cid: dict[str, Part]

    def part(self, cid: str | None) -> Part | None:
        """The part with this Content-ID (in any of its written forms), if any."""
        key = normalize_cid(cid)
        return None if key is None else self.by_cid.get(key)


def normalize_cid(raw: str | None) -> str | None:
    """A Content-ID as parts are keyed: trimmed, without ``<>``; a ``cid:`` URL
    (RFC 2392) also loses its scheme and its percent-encoding."""
    if raw is None:
        return None
    cid = raw.strip(" \t\r\n")
    if cid[:4].lower() == "cid:":
        cid = unquote(cid[4:])
    cid = cid.removeprefix("<").removesuffix(">").strip(" \t")
    return cid or None


def content_type_params(content_type: str) -> tuple[str, dict[str, str]]:
    """(``type/subtype`` in lower case, parameters by lower-case name, unquoted)."""
    mtype, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        params.setdefault(match.group(1).lower(), value)
    return mtype.strip(" \t").lower(), params


def split_related(
    content_type: str,
    body: bytes,
    *,
    max_bytes: int = MAX_MULTIPART_BYTES,
    max_parts: int = MAX_PARTS,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> Related:
    """Split one multipart body by the boundary its Content-Type names, or raise BodyError."""
    check_size(body, max_bytes)
    mtype, params = content_type_params(content_type)
    if not mtype.startswith("multipart/"):
        raise BodyError("bad-multipart", f"{mtype or 'no type'} is not a multipart type")
    boundary = params.get("boundary", "")
    if not 0 < len(boundary) <= 200 or not boundary.isascii():
        raise BodyError("bad-multipart", "the Content-Type has no usable boundary")
    delimiter = b"--" + boundary.encode("ascii")
    found = _next_delimiter(body, delimiter, 0)
    if found is None:
        raise BodyError("bad-multipart", "the boundary never appears in the body")
    _, closed, start = found
    parts: list[Part] = []
    while not closed:
        found = _next_delimiter(body, delimiter, start)
        if found is None:
            raise BodyError("bad-multipart", "no closing delimiter: the body is truncated")
        if len(parts) >= max_parts:
            raise BodyError("too-many-parts", f"more than {max_parts} body parts")
        at, closed, after = found
        end = at - 1 if at > 0 and body[at - 1] == 0x0A else at  # the line break before
        if end > start and body[end - 1] == 0x0D:
            end -= 1
        parts.append(_part(body[start : max(start, end)], max_header_bytes))
        start = after
    if not parts:
        raise BodyError("bad-multipart", "no body part")
    by_cid: dict[str, Part] = {}
    for p in parts:
        if p.content_id is not None:
            by_cid.setdefault(p.content_id, p)
    root = parts[0]
    start_cid = normalize_cid(params.get("start"))
    if start_cid is not None:
        named = by_cid.get(start_cid)
        if named is None:
            raise BodyError("bad-multipart", f"start names <{start_cid}>, which no part has")
        root = named
    if not root.content_type and params.get("type"):
        root = Part(params["type"], root.content_id, root.body)
    return Related(root, tuple(parts), by_cid)


def _next_delimiter(body: bytes, delimiter: bytes, start: int) -> tuple[int, bool, int] | None:
    """(where, is it the close delimiter, where the next line starts) of the first
    delimiter line at or after ``start``; None when there is none."""
    size = len(delimiter)
    at = body.find(delimiter, start)
    while at >= 0:
        if at == 0 or body[at - 1] == 0x0A:  # delimiters start lines
            tail = at + size
            closed = body.startswith(b"--", tail)
            if closed:
                tail += 2
            line_end = body.find(b"\n", tail)
            line_end = len(body) if line_end < 0 else line_end
            if not body[tail:line_end].strip(_BLANKS + b"\r"):
                return at, closed, min(line_end + 1, len(body))
        at = body.find(delimiter, at + 1)
    return None


def _part(raw: bytes, max_header_bytes: int) -> Part:
    """Headers up to the first empty line, then the body."""
    headers: dict[str, str] = {}
    pos = 0
    last = ""
    while True:
        line_end = raw.find(b"\n", pos)
        if line_end < 0:
            if pos == len(raw):  # headers and nothing else: an empty body
                break
            line_end = len(raw)
        if line_end > max_header_bytes:
            raise BodyError("bad-multipart", f"a part's headers exceed {max_header_bytes} bytes")
        line = raw[pos:line_end].rstrip(b"\r")
        pos = line_end + 1
        if not line:
            break
        text = line.decode("utf-8", "replace")
        if text[0] in " \t" and last:  # a folded header goes on
            headers[last] += " " + text.strip(" \t")
            continue
        name, colon, value = text.partition(":")
        if not colon:
            raise BodyError("bad-multipart", "a part's header line has no colon")
        last = name.strip(" \t").lower()
        if last not in headers:  # a repeated header: the first wins
            headers[last] = value.strip(" \t")
        else:
            last = ""
    body = raw[pos:] if pos < len(raw) else b""
    encoding = headers.get("content-transfer-encoding", "").lower()
    if encoding == "base64":
        try:
            body = binascii.a2b_base64(body)
        except binascii.Error as e:
            raise BodyError("bad-multipart", f"a base64 part does not decode: {e}") from None
    elif encoding == "quoted-printable":
        body = binascii.a2b_qp(body)
    return Part(headers.get("content-type", ""), normalize_cid(headers.get("content-id")), body)
