"""A safe, single-pass PIDF (RFC 3863) parser for NOTIFY bodies.

NOTIFY bodies come from the network, so the parser is built to refuse rather
than to interpret: its expat comes locked down from ``xmlsafe`` (no DOCTYPE,
hence no entity is ever declared, expanded or loaded), and size, nesting
depth, element count and the extension text it writes are bounded. It runs expat
directly with namespace processing so that PIDF elements are recognised by
(namespace URI, local name): presence servers such as Kamailio repeat
``xmlns`` on nested elements, others use prefixes, and both must read the same.

Leniency, where RFC 3863 is stricter (the original module aborted the whole
document on any of these):

* a ``<tuple>`` without ``<status>`` or ``<basic>`` is kept with ``basic=None``;
* a ``<basic>`` other than open/closed (any case, trimmed) gives ``basic=None``
  rather than the original's "closed": "unknown" must not read as "offline";
* a tuple without ``id`` gets ``id=""``;
* a ``priority`` that is not a number in 0..1 gives ``priority=None``;
* a root ``presence`` in the CPIM-PIDF namespace or in no namespace is accepted;
* a repeated ``<contact>``, ``<timestamp>`` or ``<basic>``: the first one wins;
* markup inside a note, contact, basic or timestamp contributes its text only.

Everything the parser does not model (RPID ``<person>``, ``<device>``, tuple and
status extensions) is kept as standalone XML text, in document order; that text
is bounded linearly in the body's size (see MAX_EXTENSION_CHARS).

In the compiled build, the common plain shape is first offered to
``pidf_plain``, which reads it without expat to the same result or declines.
"""

from __future__ import annotations

from types import FunctionType
from typing import Final
from xml.parsers.expat import XMLParserType

from .document import Basic, Note, PresenceTuple, Presentity
from .pidf_plain import qvalue, read_plain
from .xmlsafe import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_ELEMENTS,
    SEP,
    BodyError,
    check_size,
    locked_parser,
    run,
)

__all__ = [
    "CPIM_PIDF_NS",
    "EXTENSION_RATIO",
    "EXTENSION_SLACK",
    "MAX_EXTENSION_CHARS",
    "PIDF_NS",
    "PidfError",
    "parse_pidf",
]

PIDF_NS: Final = "urn:ietf:params:xml:ns:pidf"
CPIM_PIDF_NS: Final = "urn:ietf:params:xml:ns:cpim-pidf"
_XML_NS: Final = "http://www.w3.org/XML/1998/namespace"

_SEP: Final = SEP
# PIDF elements are matched in these namespaces only; "" is no namespace,
# which the original's matching accepted too.
_PIDF_NAMESPACES: Final = frozenset((PIDF_NS, CPIM_PIDF_NS, ""))
_XML_LANG: Final = _XML_NS + _SEP + "lang" + _SEP + "xml"
_XML_WS: Final = " \t\n\r"

# What an open element is to the parser. Text elements come last: a mode of
# _IGNORED or above means "markup inside a text element is skipped".
_ROOT: Final = 0
_TUPLE: Final = 1
_STATUS: Final = 2
_EXT: Final = 3  # inside an extension subtree, serialised as it goes
_IGNORED: Final = 4  # elements inside a text element, and repeated singletons
_BASIC: Final = 5  # basic, contact, timestamp, note: their text is collected
_CONTACT: Final = 6
_TIMESTAMP: Final = 7
_NOTE: Final = 8

# The PIDF local names, as small ints; 0 is "not a PIDF element".
_K_OTHER: Final = 0
_K_PRESENCE: Final = 1
_K_TUPLE: Final = 2
_K_STATUS: Final = 3
_K_BASIC: Final = 4
_K_CONTACT: Final = 5
_K_NOTE: Final = 6
_K_TIMESTAMP: Final = 7
_LOCALS: Final = {
    "presence": _K_PRESENCE,
    "tuple": _K_TUPLE,
    "status": _K_STATUS,
    "basic": _K_BASIC,
    "contact": _K_CONTACT,
    "note": _K_NOTE,
    "timestamp": _K_TIMESTAMP,
}

# Names as expat reports them for PIDF elements ("uri local" or, in no
# namespace, "local"), to their kind. A prefixed name ("uri local prefix") is
# looked up without its prefix; those, and the names of other elements, are
# remembered in _SEEN, emptied when full so that documents cannot grow it.
_KINDS: Final[dict[str, int]] = {}
for _ns in _PIDF_NAMESPACES:
    for _local, _k in _LOCALS.items():
        _KINDS[f"{_ns}{_SEP}{_local}" if _ns else _local] = _k
_SEEN: Final[dict[str, int]] = {}
_SEEN_MAX: Final = 512


def _kind(name: str) -> int:
    """The PIDF kind of an expat name, whatever prefix the document chose."""
    kind = _KINDS.get(name)
    if kind is not None:
        return kind
    kind = _SEEN.get(name)
    if kind is None:
        kind = _K_OTHER
        if name.count(_SEP) == 2:  # "uri local prefix"
            kind = _KINDS.get(name[: name.rindex(_SEP)], _K_OTHER)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[name] = kind
    return kind


#: The PIDF parser's error is the one every body parser raises (see xmlsafe);
#: the old name stays for its callers.
PidfError = BodyError

#: Extension elements are re-serialised with every namespace they use declared
#: on their own root, so a long URI declared once on ``<presence>`` is written
#: again for each extension: the output could grow with the square of the body.
#: It is bounded, over all the document's extensions, by the smaller of
#: MAX_EXTENSION_CHARS and EXTENSION_RATIO times the body's size plus
#: EXTENSION_SLACK (so that a small document may still repeat a few namespaces).
MAX_EXTENSION_CHARS: Final = 1 << 20
EXTENSION_RATIO: Final = 10
EXTENSION_SLACK: Final = 64 * 1024


#: The plain reader beats expat only when compiled (3.7 against 7.4 µs for the
#: body SIPp sends); interpreted, its loop over characters is slower (13.5
#: against 10.8 µs), so a pure Python build reads every document with expat.
#: (A compiled function is a builtin, not a Python function.)
_PLAIN_FIRST: Final = not isinstance(read_plain, FunctionType)


def parse_pidf(
    body: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
    max_extension_chars: int = MAX_EXTENSION_CHARS,
    plain: bool = True,
) -> Presentity:
    """Parse one PIDF document, or raise PidfError (``BodyError``); never anything else.

    In a compiled build a plain document (``pidf_plain``) is read without
    expat, unless ``plain`` is False; any other goes to the expat reader,
    which reads every document to the same result (``plain=False`` is what
    the tests hold the plain reader to).
    """
    check_size(body, max_bytes)
    if plain and _PLAIN_FIRST:
        read = read_plain(body, max_depth, max_elements)
        if read is not None:
            return read
    return _read_with_expat(body, max_depth, max_elements, max_extension_chars)


def _read_with_expat(
    body: bytes, max_depth: int, max_elements: int, max_extension_chars: int
) -> Presentity:
    parser = locked_parser()
    budget = min(max_extension_chars, EXTENSION_RATIO * len(body) + EXTENSION_SLACK)
    builder = _Builder(parser, max_depth, max_elements, budget)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.texts.append
    try:
        run(parser, body)
    finally:  # leave no parser <-> builder cycle for the GC on this hot path
        builder.parser = None
    return builder.result()


def _escape_text(s: str) -> str:
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    if "\r" in s:  # a literal CR would be read back as LF
        s = s.replace("\r", "&#13;")
    return s


_ATTR_ESCAPES: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def _escape_attr(s: str) -> str:
    # Attribute-value normalisation would turn raw tabs and newlines into spaces.
    return s.translate(_ATTR_ESCAPES)


class _Extension:
    """Serialises one extension subtree into a standalone XML fragment.

    Each element declares exactly the namespace bindings it needs that are not
    already in scope in the output, so the fragment is well-formed on its own
    whatever the source declared on its ancestors. ``left`` is what remains of
    the document's extension budget, in characters: going below zero stops the
    parse (``too-large``) before the text is built.
    """

    __slots__ = ("empty", "left", "parts", "scopes")

    def __init__(self, left: int) -> None:
        self.left = left
        self.parts: list[str] = []
        # prefix -> URI in scope in the output; "" is the default namespace.
        self.scopes: list[dict[str, str]] = [{"": ""}]
        self.empty = False  # the last part is a start tag with nothing after it yet

    def start(self, name: str, attrs: dict[str, str]) -> None:
        scope = self.scopes[-1]
        decls: dict[str, str] = {}
        qname, prefix, uri = _bind(name, scope, True)
        if prefix is not None:
            decls[prefix] = uri
        out = ["<", qname]
        for aname, value in attrs.items():
            aq, aprefix, auri = _bind(aname, scope, False)
            if aprefix is not None:
                decls[aprefix] = auri
            out.append(f' {aq}="{_escape_attr(value)}"')
        if decls:
            scope = {**scope, **decls}
            out[2:2] = [
                f' xmlns:{p}="{_escape_attr(u)}"' if p else f' xmlns="{_escape_attr(u)}"'
                for p, u in decls.items()
            ]
        out.append(">")
        tag = "".join(out)
        self._spend(len(tag))
        self.parts.append(tag)
        self.scopes.append(scope)
        self.empty = True

    def end(self, name: str) -> None:
        self.scopes.pop()
        if self.empty:  # no content: close it in place, "<x/>"
            self.parts[-1] = self.parts[-1][:-1] + "/>"
            self.empty = False
            return
        parts = name.split(_SEP)
        if len(parts) == 1:
            tag = f"</{name}>"
        elif len(parts) == 2:
            tag = f"</{parts[1]}>"
        else:
            tag = f"</{parts[2]}:{parts[1]}>"
        self._spend(len(tag))
        self.parts.append(tag)

    def text(self, data: str) -> None:
        if data:
            escaped = _escape_text(data)
            self._spend(len(escaped))
            self.parts.append(escaped)
            self.empty = False

    def _spend(self, chars: int) -> None:
        left = self.left = self.left - chars
        if left < 0:
            raise BodyError(
                "too-large",
                "the extension elements, written out as standalone XML, exceed"
                " the limit for a body of this size",
            )

    def result(self) -> str:
        return "".join(self.parts)


def _bind(name: str, scope: dict[str, str], element: bool) -> tuple[str, str | None, str]:
    """The qualified name to write for an expat name, and the prefix to declare
    (with its URI) when the output scope does not bind it that way yet (else None)."""
    parts = name.split(_SEP)
    if len(parts) == 1:  # no namespace
        if element and scope[""] != "":
            return name, "", ""  # undeclare an inherited default namespace
        return name, None, ""
    uri, local = parts[0], parts[1]
    prefix = parts[2] if len(parts) > 2 else ""
    qname = f"{prefix}:{local}" if prefix else local
    if prefix == "xml" or scope.get(prefix) == uri:
        return qname, None, uri
    return qname, prefix, uri


_NO_NOTES: Final[tuple[Note, ...]] = ()
_NO_STRINGS: Final[tuple[str, ...]] = ()
# Bits of _Builder.seen: the singletons of the current tuple met so far.
_SEEN_BASIC: Final = 1
_SEEN_CONTACT: Final = 2
_SEEN_TIMESTAMP: Final = 4


class _Builder:
    """Expat callbacks: a stack of what each open element is, and the result so far.

    Character data goes straight into ``texts`` (a C-level ``list.append``, no
    Python frame): the list is emptied when a text element starts and joined
    when it ends, so the whitespace between other elements is dropped there.
    Inside an extension, the extension's serialiser takes the text instead.
    The current tuple's fields are kept flat here and made into a
    :class:`PresenceTuple` when it ends.
    """

    __slots__ = (
        "count",
        "entity",
        "ext",
        "ext_left",
        "extensions",
        "max_depth",
        "max_elements",
        "modes",
        "notes",
        "parser",
        "seen",
        "t_basic",
        "t_contact",
        "t_extensions",
        "t_id",
        "t_notes",
        "t_priority",
        "t_timestamp",
        "text_lang",
        "texts",
        "tuples",
    )

    # The current tuple, set when it starts (t_id is None outside a tuple).
    seen: int
    t_basic: Basic | None
    t_contact: str | None
    t_priority: float | None
    t_timestamp: str | None
    t_notes: list[Note] | None
    t_extensions: list[str] | None

    def __init__(
        self, parser: XMLParserType, max_depth: int, max_elements: int, ext_left: int
    ) -> None:
        self.parser: XMLParserType | None = parser
        self.ext_left = ext_left
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.count = 0
        self.modes: list[int] = []
        self.entity: str | None = None
        self.tuples: list[PresenceTuple] = []
        self.notes: list[Note] = []
        self.extensions: list[str] = []
        self.texts: list[str] = []
        self.ext: _Extension | None = None
        self.t_id: str | None = None  # None: not inside a tuple
        self.text_lang: str | None = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        count = self.count = self.count + 1
        if count > self.max_elements:
            raise PidfError(
                "too-many-elements", f"more than {self.max_elements} elements in the document"
            )
        modes = self.modes
        depth = len(modes)
        if depth >= self.max_depth:
            raise PidfError("too-deep", f"elements nested deeper than {self.max_depth}")
        if not depth:
            self._start_root(name, attrs)
            return
        parent = modes[-1]
        if parent >= _IGNORED:  # markup inside a text element: only its text counts
            modes.append(_IGNORED)
            return
        if parent == _EXT:
            assert self.ext is not None
            self.ext.start(name, attrs)
            modes.append(_EXT)
            return
        kind = _KINDS.get(name)
        if kind is None:
            kind = _kind(name)
        if parent == _TUPLE:
            if kind == _K_STATUS:
                modes.append(_STATUS)
                return
            if kind == _K_CONTACT:
                if self.seen & _SEEN_CONTACT:  # RFC 3863 allows one; the first wins
                    modes.append(_IGNORED)
                    return
                self.seen |= _SEEN_CONTACT
                priority = attrs.get("priority")
                if priority is not None:
                    self.t_priority = qvalue(priority)
                self.texts.clear()
                modes.append(_CONTACT)
                return
            if kind == _K_NOTE:
                self.text_lang = attrs.get(_XML_LANG)
                self.texts.clear()
                modes.append(_NOTE)
                return
            if kind == _K_TIMESTAMP:
                if self.seen & _SEEN_TIMESTAMP:
                    modes.append(_IGNORED)
                    return
                self.seen |= _SEEN_TIMESTAMP
                self.texts.clear()
                modes.append(_TIMESTAMP)
                return
        elif parent == _STATUS:
            if kind == _K_BASIC:
                if self.seen & _SEEN_BASIC:
                    modes.append(_IGNORED)
                    return
                self.seen |= _SEEN_BASIC
                self.texts.clear()
                modes.append(_BASIC)
                return
        elif kind == _K_TUPLE:  # parent is the root
            self.t_id = attrs.get("id", "")
            self.t_basic = self.t_contact = self.t_priority = self.t_timestamp = None
            self.t_notes = None
            self.t_extensions = None
            self.seen = 0
            modes.append(_TUPLE)
            return
        elif kind == _K_NOTE:
            self.text_lang = attrs.get(_XML_LANG)
            self.texts.clear()
            modes.append(_NOTE)
            return
        # Anything else below the root, a tuple or a status is an extension.
        ext = self.ext = _Extension(self.ext_left)
        ext.start(name, attrs)
        modes.append(_EXT)
        assert self.parser is not None
        self.parser.CharacterDataHandler = ext.text

    def _start_root(self, name: str, attrs: dict[str, str]) -> None:
        if _kind(name) != _K_PRESENCE:
            shown = name.split(_SEP)
            what = f"{{{shown[0]}}}{shown[1]}" if len(shown) > 1 else shown[0]
            raise PidfError("not-pidf", f"the root element is {what}, not a PIDF presence")
        self.entity = attrs.get("entity", "")
        self.modes.append(_ROOT)

    def end(self, name: str) -> None:
        mode = self.modes.pop()
        if mode > _IGNORED:
            # XML whitespace only: a non-breaking space is content.
            value = "".join(self.texts).strip(_XML_WS)
            if mode == _BASIC:
                if value == "open":
                    self.t_basic = "open"
                elif value == "closed":
                    self.t_basic = "closed"
                else:
                    lowered = value.lower()
                    self.t_basic = (
                        "open" if lowered == "open" else "closed" if lowered == "closed" else None
                    )
            elif mode == _CONTACT:
                self.t_contact = value or None
            elif mode == _NOTE:
                if value:
                    note = Note(value, self.text_lang)
                    if self.t_id is None:
                        self.notes.append(note)
                    elif self.t_notes is None:
                        self.t_notes = [note]
                    else:
                        self.t_notes.append(note)
            else:
                self.t_timestamp = value or None
        elif mode == _TUPLE:
            assert self.t_id is not None
            notes = self.t_notes
            extensions = self.t_extensions
            self.tuples.append(
                PresenceTuple(
                    self.t_id,
                    self.t_basic,
                    self.t_contact,
                    self.t_priority,
                    self.t_timestamp,
                    _NO_NOTES if notes is None else tuple(notes),
                    _NO_STRINGS if extensions is None else tuple(extensions),
                )
            )
            self.t_id = None
        elif mode == _EXT:
            ext = self.ext
            assert ext is not None
            ext.end(name)
            parent = self.modes[-1]
            if parent != _EXT:
                assert self.parser is not None
                self.parser.CharacterDataHandler = self.texts.append
                self.ext = None
                self.ext_left = ext.left
                if parent == _ROOT:
                    self.extensions.append(ext.result())
                elif self.t_extensions is None:  # a tuple's or a status' child
                    self.t_extensions = [ext.result()]
                else:
                    self.t_extensions.append(ext.result())

    def result(self) -> Presentity:
        if self.entity is None:  # expat reports a missing root itself; kept for safety
            raise PidfError("not-xml", "no root element")
        return Presentity(
            self.entity,
            tuple(self.tuples),
            tuple(self.notes) if self.notes else _NO_NOTES,
            tuple(self.extensions) if self.extensions else _NO_STRINGS,
        )
