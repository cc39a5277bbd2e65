"""A reader for plain PIDF documents, the shape nearly every NOTIFY carries,
that falls back to expat for anything else.

Most presence documents are a handful of elements: ``presence``, ``tuple``,
``status``, ``basic``, ``contact``, ``note``, ``timestamp``, in the PIDF
namespace, with no entities, comments or extensions. expat reads them through
one Python callback per tag and a dict of attributes per start tag; that was a
quarter of a shard's CPU per NOTIFY. This reader takes such a document apart
with ``str.find`` and one regular expression per start tag that has
attributes.

It is an optimisation, not a second parser: it says "not mine" (returns None)
for anything outside a narrow grammar, and :func:`presence.pidf.parse_pidf`
then runs the locked-down expat reader, which accepts or refuses it with the
same result as before. Whatever this reader accepts is well-formed XML that
expat would read to the very same :class:`Presentity` (the unit tests compare
the two on generated and mutated documents). Outside its grammar:

* any ``&`` (entity and character references), ``<!`` (DOCTYPE, comments,
  CDATA) or ``<?`` after the XML declaration, and ``]]>``;
* any character XML forbids, a byte sequence that is not UTF-8, a BOM;
* an element other than the seven above, or one in a place where the expat
  reader treats it as an extension; a prefixed element;
* a ``xmlns`` that is not the PIDF or CPIM-PIDF namespace (or ``""``);
  a prefix declaration that expat would have to check; a prefixed attribute
  other than ``xml:*``; a repeated attribute;
* a repeated ``basic``, ``contact`` or ``timestamp`` in one tuple, or markup
  inside a text element (the expat reader's "first wins" and "text only"
  rules then apply);
* whitespace that XML would normalise: a CR in a value, a tab, CR or LF in
  an attribute value;
* anything but whitespace around the root element, more elements or depth
  than the limits allow.

The size limit is checked by the caller before either reader runs.
"""

from __future__ import annotations

import re
from typing import Final

from .document import Basic, Note, PresenceTuple, Presentity

__all__ = ["qvalue", "read_plain"]

_PIDF_NAMESPACES: Final = frozenset(
    ("urn:ietf:params:xml:ns:pidf", "urn:ietf:params:xml:ns:cpim-pidf", "")
)
_XML_WS: Final = " \t\r\n"

# The only XML declaration read here: version 1.0, UTF-8 or no encoding.
_DECLARATION: Final = re.compile(
    r"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"1\.0\"|'1\.0')"
    r"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:\"[Uu][Tt][Ff]-8\"|'[Uu][Tt][Ff]-8'))?"
    r"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:\"(?:yes|no)\"|'(?:yes|no)'))?"
    r"[ \t\r\n]*\?>"
)
# The declarations servers write, found without the regular expression.
_USUAL_DECLARATIONS: Final = (
    '<?xml version="1.0" encoding="UTF-8"?>',
    "<?xml version='1.0' encoding='UTF-8'?>",
    '<?xml version="1.0"?>',
)
# Bytes XML forbids: the control characters but tab, LF and CR (a byte
# string's translate() deletes every other byte; what is left is refused).
_ALLOWED_BYTES: Final = bytes(c for c in range(256) if c >= 0x20 or c in (0x09, 0x0A, 0x0D))
# Non-characters (U+FFFE, U+FFFF) and the BOM, in UTF-8: left to expat.
_AWKWARD_CHARACTERS: Final = ("\ufeff", "\ufffe", "\uffff")
_QNAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*(?::[A-Za-z_][A-Za-z0-9._-]*)?")
# The attributes the readers use, and the declaration; any other name is checked.
_KNOWN_ATTRIBUTES: Final = frozenset(("xmlns", "entity", "id", "priority", "xml:lang"))

# What each element is, and which elements each may hold without the expat
# reader calling them extensions.
_PRESENCE: Final = 1
_TUPLE: Final = 2
_STATUS: Final = 3
_BASIC: Final = 4
_CONTACT: Final = 5
_NOTE: Final = 6
_TIMESTAMP: Final = 7
# The element names by their first letter, with their kinds.
_BY_INITIAL: Final[dict[str, tuple[tuple[str, int], ...]]] = {
    "p": (("presence", _PRESENCE),),
    "t": (("tuple", _TUPLE), ("timestamp", _TIMESTAMP)),
    "s": (("status", _STATUS),),
    "b": (("basic", _BASIC),),
    "c": (("contact", _CONTACT),),
    "n": (("note", _NOTE),),
}
_NO_NAMES: Final[tuple[tuple[str, int], ...]] = ()
# What each kind may hold (a bit per kind), indexed by kind.
_CHILDREN: Final = (
    0,
    1 << _TUPLE | 1 << _NOTE,
    1 << _STATUS | 1 << _CONTACT | 1 << _NOTE | 1 << _TIMESTAMP,
    1 << _BASIC,
    0,
    0,
    0,
    0,
)
_PRESENCE_ONLY: Final = 1 << _PRESENCE
_GT: Final = 0x3E
_SLASH: Final = 0x2F
_NO_ATTRIBUTES: Final[dict[str, str]] = {}
_NO_NOTES: Final[tuple[Note, ...]] = ()
_NO_STRINGS: Final[tuple[str, ...]] = ()


class _NotPlainError(Exception):
    """Internal: the document is outside this reader's grammar."""


def read_plain(body: bytes, max_depth: int, max_elements: int) -> Presentity | None:
    """The document, or None when it is not plain PIDF (then expat must read it)."""
    if body.translate(None, _ALLOWED_BYTES):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "&" in text or "]]>" in text:
        return None
    if not text.isascii():
        for character in _AWKWARD_CHARACTERS:
            if character in text:
                return None
    start = 0
    for usual in _USUAL_DECLARATIONS:  # a regular expression call costs more
        if text.startswith(usual):
            start = len(usual)
            break
    else:
        declaration = _DECLARATION.match(text)
        if declaration is not None:
            start = declaration.end()
    try:
        return _Reader(text, max_depth, max_elements).read(start)
    except _NotPlainError:
        return None


class _Reader:
    """One document's walk: the open elements, the current tuple, the result."""

    __slots__ = (
        "count",
        "entity",
        "max_depth",
        "max_elements",
        "notes",
        "t_basic",
        "t_contact",
        "t_id",
        "t_notes",
        "t_priority",
        "t_seen",
        "t_timestamp",
        "text",
        "tuples",
    )

    # The current tuple (t_seen is 0 outside a tuple, and a bit per singleton
    # met inside one, with _IN_TUPLE).

    def __init__(self, text: str, max_depth: int, max_elements: int) -> None:
        self.text = text
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.count = 0
        self.entity = ""
        self.tuples: list[PresenceTuple] = []
        self.notes: list[Note] = []
        self.t_id = ""
        self.t_basic: Basic | None = None
        self.t_contact: str | None = None
        self.t_priority: float | None = None
        self.t_timestamp: str | None = None
        self.t_notes: list[Note] = []
        self.t_seen = 0

    def read(self, start: int) -> Presentity:
        text = self.text
        opening = text.find("<", start)
        if opening < 0 or text[start:opening].strip(_XML_WS):
            raise _NotPlainError
        end = self._element(opening, 0, _PRESENCE_ONLY)
        if text[end:].strip(_XML_WS):
            raise _NotPlainError
        return Presentity(
            self.entity,
            tuple(self.tuples),
            tuple(self.notes) if self.notes else _NO_NOTES,
            _NO_STRINGS,
        )

    def _element(self, opening: int, depth: int, allowed: int) -> int:
        """Read the element whose start tag opens at ``opening``; where it ends.

        ``allowed`` has a bit per kind of element that may be here.
        """
        text = self.text
        at = opening + 1
        name = ""
        kind = 0
        for candidate, candidate_kind in _BY_INITIAL.get(text[at : at + 1], _NO_NAMES):
            if text.find(candidate, at, at + len(candidate)) == at:
                name = candidate
                kind = candidate_kind
                break
        if not allowed & (1 << kind):  # kind 0 is never allowed
            raise _NotPlainError
        self.count += 1
        if self.count > self.max_elements or depth >= self.max_depth:
            raise _NotPlainError
        at += len(name)
        empty = False
        attributes = _NO_ATTRIBUTES
        if _char(text, at) == _GT:
            closing = at
        else:  # attributes, an empty element, or not a name of ours at all
            closing = text.find(">", at)
            if closing < 0:
                raise _NotPlainError
            end = closing
            if _char(text, closing - 1) == _SLASH:
                empty = True
                end = closing - 1
            if end > at:
                attributes = _attributes(text, at, end)
        self._start(kind, attributes)
        after = closing + 1
        if empty:
            if kind >= _BASIC:
                self._value(kind, "", attributes)
        elif kind >= _BASIC:  # a text element: its text, then its end tag
            opening = text.find("<", after)
            if opening < 0:
                raise _NotPlainError
            self._value(kind, text[after:opening], attributes)
            after = self._end_tag(opening, name)
        else:
            children = _CHILDREN[kind]
            while True:
                opening = text.find("<", after)
                if opening < 0:
                    raise _NotPlainError
                if _char(text, opening + 1) == _SLASH:
                    after = self._end_tag(opening, name)
                    break
                after = self._element(opening, depth + 1, children)
        if kind == _TUPLE:
            self._end_tuple()
        return after

    def _end_tag(self, opening: int, name: str) -> int:
        """Where the end tag at ``opening`` ends; it must close ``name``."""
        text = self.text
        at = opening + 2
        if _char(text, opening + 1) != _SLASH or text.find(name, at, at + len(name)) != at:
            raise _NotPlainError
        at += len(name)
        if _char(text, at) == _GT:
            return at + 1
        closing = text.find(">", at)
        if closing < 0 or _skip_space(text, at, closing) != closing:
            raise _NotPlainError
        return closing + 1

    def _start(self, kind: int, attributes: dict[str, str]) -> None:
        if kind == _PRESENCE:
            self.entity = attributes.get("entity", "")
        elif kind == _TUPLE:
            self.t_id = attributes.get("id", "")
            self.t_basic = self.t_contact = self.t_priority = self.t_timestamp = None
            self.t_notes = []
            self.t_seen = _IN_TUPLE
        elif kind not in (_STATUS, _NOTE):  # basic, contact, timestamp: one each
            bit = 1 << kind
            if self.t_seen & bit:
                raise _NotPlainError
            self.t_seen |= bit

    def _value(self, kind: int, raw: str, attributes: dict[str, str]) -> None:
        value = raw.strip(_XML_WS)
        if "\r" in value:  # XML reads CR LF and a lone CR as LF
            raise _NotPlainError
        if kind == _BASIC:
            lowered = value.lower()
            self.t_basic = (
                "open" if lowered == "open" else "closed" if lowered == "closed" else None
            )
        elif kind == _CONTACT:
            self.t_contact = value or None
            priority = attributes.get("priority")
            if priority is not None:
                self.t_priority = qvalue(priority)
        elif kind == _TIMESTAMP:
            self.t_timestamp = value or None
        elif value:  # a note, in a tuple or at the top
            note = Note(value, attributes.get("xml:lang"))
            if self.t_seen:
                self.t_notes.append(note)
            else:
                self.notes.append(note)

    def _end_tuple(self) -> None:
        self.t_seen = 0
        self.tuples.append(
            PresenceTuple(
                self.t_id,
                self.t_basic,
                self.t_contact,
                self.t_priority,
                self.t_timestamp,
                tuple(self.t_notes) if self.t_notes else _NO_NOTES,
                _NO_STRINGS,
            )
        )


_IN_TUPLE: Final = 1


def _attributes(tag: str, at: int, end: int) -> dict[str, str]:
    """The attributes in ``tag[at:end]``, a start tag's content after its name:
    (S name Eq quoted)* S?.

    A namespace declaration is checked (only the PIDF ones are plain) but
    kept like any attribute: no reader asks for ``xmlns``.
    """
    attributes: dict[str, str] = {}
    while True:
        spaced = _skip_space(tag, at, end)
        if spaced == end:
            return attributes
        if spaced == at:  # attributes are separated by whitespace
            raise _NotPlainError
        equals = tag.find("=", spaced, end)
        if equals < 0:
            raise _NotPlainError
        name = tag[spaced:equals].rstrip(_XML_WS)
        if name not in _KNOWN_ATTRIBUTES and _QNAME.fullmatch(name) is None:
            raise _NotPlainError
        quote_at = _skip_space(tag, equals + 1, end)
        if quote_at == end:
            raise _NotPlainError
        quote = tag[quote_at]
        if quote not in ('"', "'"):
            raise _NotPlainError
        closing = tag.find(quote, quote_at + 1, end)
        if closing < 0:
            raise _NotPlainError
        value = tag[quote_at + 1 : closing]
        if "<" in value or "\t" in value or "\n" in value or "\r" in value:
            raise _NotPlainError  # not XML, or normalised to spaces
        if name in attributes:
            raise _NotPlainError
        if name == "xmlns":
            if value not in _PIDF_NAMESPACES:
                raise _NotPlainError
        elif ":" in name and not name.startswith("xml:"):
            raise _NotPlainError  # a prefix declaration or a prefixed attribute: expat checks those
        attributes[name] = value
        at = closing + 1


def _skip_space(text: str, at: int, end: int) -> int:
    """The index of the first character in ``text[at:end]`` that is not XML
    whitespace, or ``end``."""
    while at < end:
        c = ord(text[at])
        if c not in (0x20, 0x0A, 0x0D, 0x09):
            break
        at += 1
    return at


def _char(text: str, at: int) -> int:
    """The code point at ``at``, or -1 past the end (a native index, no 1-char str)."""
    return ord(text[at]) if at < len(text) else -1


def qvalue(raw: str) -> float | None:
    """A contact's priority: RFC 3863 makes it a qvalue; anything unreadable or
    out of 0..1 is dropped (both readers use this)."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None
