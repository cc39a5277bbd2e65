"""A safe, single-pass PIDF (RFC 3863) parser for NOTIFY bodies.

NOTIFY bodies come from the network, so the parser is built to refuse rather
than to interpret: no DOCTYPE, hence no entity is ever declared, expanded or
loaded; size, nesting depth and element count are bounded. It runs expat
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
status extensions) is kept as standalone XML text, in document order.
"""

from __future__ import annotations

from typing import Final
from xml.parsers.expat import (
    XML_PARAM_ENTITY_PARSING_NEVER,
    ExpatError,
    ParserCreate,
    XMLParserType,
)

from .document import Basic, Note, PresenceTuple, Presentity

__all__ = [
    "CPIM_PIDF_NS",
    "PIDF_NS",
    "PidfError",
    "parse_pidf",
]

PIDF_NS: Final = "urn:ietf:params:xml:ns:pidf"
CPIM_PIDF_NS: Final = "urn:ietf:params:xml:ns:cpim-pidf"
_XML_NS: Final = "http://www.w3.org/XML/1998/namespace"

# expat reports a name as "uri local prefix" (namespace_prefixes on), "uri local"
# (default namespace) or "local" (no namespace). expat itself refuses a
# namespace URI that contains the separator, so splitting on it is unambiguous.
_SEP: Final = " "
# PIDF elements are matched in these namespaces only; "" is no namespace,
# which the original's matching accepted too.
_PIDF_NAMESPACES: Final = frozenset((PIDF_NS, CPIM_PIDF_NS, ""))
_XML_LANG: Final = _XML_NS + _SEP + "lang" + _SEP + "xml"
_XML_WS: Final = " \t\n\r"

# What an open element is to the parser.
_ROOT: Final = 0
_TUPLE: Final = 1
_STATUS: Final = 2
_TEXT: Final = 3  # contact, basic, timestamp, note: their text is collected
_IGNORED: Final = 4  # elements inside a text element, and repeated singletons
_EXT: Final = 5  # inside an extension subtree, serialised as it goes

# Names as expat reports them for PIDF elements, in each accepted namespace.
_NAMES: Final[dict[str, str]] = {}
for _ns in _PIDF_NAMESPACES:
    for _local in ("presence", "tuple", "status", "basic", "contact", "note", "timestamp"):
        _NAMES[f"{_ns}{_SEP}{_local}" if _ns else _local] = _local


def _pidf_local(name: str) -> str | None:
    """The PIDF local name of an expat name, whatever prefix the document chose."""
    local = _NAMES.get(name)
    if local is None and name.count(_SEP) == 2:  # "uri local prefix"
        local = _NAMES.get(name[: name.rindex(_SEP)])
    return local


class PidfError(ValueError):
    """A body that is not a PIDF document this service accepts.

    ``kind`` is short and stable (for metrics and tests): ``not-xml``,
    ``not-pidf``, ``too-large``, ``too-deep``, ``too-many-elements``,
    ``forbidden-dtd``, ``forbidden-entity``. The message says what was wrong in
    words a log reader understands.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_pidf(
    body: bytes,
    *,
    max_bytes: int = 256 * 1024,
    max_depth: int = 32,
    max_elements: int = 10_000,
) -> Presentity:
    """Parse one PIDF document, or raise PidfError; never anything else."""
    if len(body) > max_bytes:
        raise PidfError("too-large", f"document is {len(body)} bytes, the limit is {max_bytes}")
    parser = ParserCreate(namespace_separator=_SEP)
    builder = _Builder(parser, max_depth, max_elements)
    parser.namespace_prefixes = True
    parser.buffer_text = True
    parser.SetParamEntityParsing(XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external_entity
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    try:
        parser.Parse(body, True)
    except PidfError:
        raise
    except ExpatError as e:
        raise PidfError("not-xml", f"not well-formed XML: {e}") from None
    except (TypeError, ValueError, LookupError) as e:  # e.g. an encoding Python lacks
        raise PidfError("not-xml", f"cannot parse the body: {e}") from None
    finally:  # leave no parser <-> builder cycle for the GC on this hot path
        parser.StartElementHandler = parser.EndElementHandler = None
        parser.CharacterDataHandler = None
    return builder.result()


def _refuse_doctype(*_: object) -> None:
    raise PidfError("forbidden-dtd", "a DOCTYPE is not allowed in a presence document")


def _refuse_entity(*_: object) -> None:
    raise PidfError("forbidden-entity", "entity declarations are not allowed")


def _refuse_external_entity(*_: object) -> int:
    raise PidfError("forbidden-entity", "external entities are not allowed")


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


def _strip(s: str) -> str:
    """Trim XML whitespace only: a non-breaking space is content."""
    return s.strip(_XML_WS)


class _Extension:
    """Serialises one extension subtree into a standalone XML fragment.

    Each element declares exactly the namespace bindings it needs that are not
    already in scope in the output, so the fragment is well-formed on its own
    whatever the source declared on its ancestors.
    """

    __slots__ = ("empty", "parts", "scopes")

    def __init__(self) -> None:
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
        self.parts.append("".join(out))
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
            self.parts.append(f"</{name}>")
        elif len(parts) == 2:
            self.parts.append(f"</{parts[1]}>")
        else:
            self.parts.append(f"</{parts[2]}:{parts[1]}>")

    def text(self, data: str) -> None:
        if data:
            self.parts.append(_escape_text(data))
            self.empty = False

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


class _TupleBuilder:
    __slots__ = ("basic", "contact", "extensions", "id", "notes", "priority", "timestamp")

    def __init__(self, tuple_id: str) -> None:
        self.id = tuple_id
        self.basic: Basic | None = None
        self.contact: str | None = None
        self.priority: float | None = None
        self.timestamp: str | None = None
        self.notes: list[Note] = []
        self.extensions: list[str] = []


class _Builder:
    """Expat callbacks: a stack of what each open element is, and the result so far.

    Character data is only wanted inside text elements and extensions, so the
    character handler is installed on entering them and removed on leaving:
    the whitespace between the other elements never reaches Python.
    """

    __slots__ = (
        "count",
        "entity",
        "ext",
        "extensions",
        "max_depth",
        "max_elements",
        "modes",
        "notes",
        "parser",
        "seen_basic",
        "seen_contact",
        "seen_timestamp",
        "text_buf",
        "text_kind",
        "text_lang",
        "tuple",
        "tuples",
    )

    def __init__(self, parser: XMLParserType, max_depth: int, max_elements: int) -> None:
        self.parser = parser
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.count = 0
        self.modes: list[int] = []
        self.entity: str | None = None
        self.tuples: list[PresenceTuple] = []
        self.notes: list[Note] = []
        self.extensions: list[str] = []
        self.tuple: _TupleBuilder | None = None
        self.ext: _Extension | None = None
        self.text_buf: list[str] = []
        self.text_kind = ""
        self.text_lang: str | None = None
        self.seen_basic = False
        self.seen_contact = False
        self.seen_timestamp = False

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.count += 1
        if self.count > self.max_elements:
            raise PidfError(
                "too-many-elements", f"more than {self.max_elements} elements in the document"
            )
        modes = self.modes
        if len(modes) >= self.max_depth:
            raise PidfError("too-deep", f"elements nested deeper than {self.max_depth}")
        if not modes:
            self._start_root(name, attrs)
            return
        parent = modes[-1]
        if parent == _EXT:
            assert self.ext is not None
            self.ext.start(name, attrs)
            modes.append(_EXT)
            return
        if parent >= _TEXT:  # markup inside a text element: only its text counts
            modes.append(_IGNORED)
            return
        local = _pidf_local(name)
        if parent == _ROOT:
            if local == "tuple":
                self.tuple = _TupleBuilder(attrs.get("id", ""))
                self.seen_basic = self.seen_contact = self.seen_timestamp = False
                modes.append(_TUPLE)
                return
            if local == "note":
                self._start_text("note", attrs)
                return
        elif parent == _TUPLE:
            if local == "status":
                modes.append(_STATUS)
                return
            if local == "note":
                self._start_text("note", attrs)
                return
            if local == "contact":
                if self.seen_contact:  # RFC 3863 allows one; the first wins
                    modes.append(_IGNORED)
                    return
                self.seen_contact = True
                assert self.tuple is not None
                self.tuple.priority = _priority(attrs.get("priority"))
                self._start_text("contact", attrs)
                return
            if local == "timestamp":
                if self.seen_timestamp:
                    modes.append(_IGNORED)
                    return
                self.seen_timestamp = True
                self._start_text("timestamp", attrs)
                return
        elif local == "basic":  # parent is a status
            if self.seen_basic:
                modes.append(_IGNORED)
                return
            self.seen_basic = True
            self._start_text("basic", attrs)
            return
        # Anything else below the root, a tuple or a status is an extension.
        ext = self.ext = _Extension()
        ext.start(name, attrs)
        modes.append(_EXT)
        self.parser.CharacterDataHandler = ext.text

    def _start_root(self, name: str, attrs: dict[str, str]) -> None:
        if _pidf_local(name) != "presence":
            shown = name.split(_SEP)
            what = f"{{{shown[0]}}}{shown[1]}" if len(shown) > 1 else shown[0]
            raise PidfError("not-pidf", f"the root element is {what}, not a PIDF presence")
        self.entity = attrs.get("entity", "")
        self.modes.append(_ROOT)

    def _start_text(self, kind: str, attrs: dict[str, str]) -> None:
        self.text_kind = kind
        buf = self.text_buf = []
        self.text_lang = attrs.get(_XML_LANG) if kind == "note" else None
        self.modes.append(_TEXT)
        self.parser.CharacterDataHandler = buf.append

    def end(self, name: str) -> None:
        modes = self.modes
        mode = modes.pop()
        if mode == _EXT:
            ext = self.ext
            assert ext is not None
            ext.end(name)
            if modes[-1] != _EXT:
                self.parser.CharacterDataHandler = None
                self.ext = None
                if modes[-1] == _ROOT:
                    self.extensions.append(ext.result())
                else:  # a tuple's or a status' child
                    assert self.tuple is not None
                    self.tuple.extensions.append(ext.result())
        elif mode == _TEXT:
            self.parser.CharacterDataHandler = None
            self._end_text()
        elif mode == _TUPLE:
            t = self.tuple
            assert t is not None
            self.tuples.append(
                PresenceTuple(
                    id=t.id,
                    basic=t.basic,
                    contact=t.contact,
                    priority=t.priority,
                    timestamp=t.timestamp,
                    notes=tuple(t.notes),
                    extensions=tuple(t.extensions),
                )
            )
            self.tuple = None

    def _end_text(self) -> None:
        value = _strip("".join(self.text_buf))
        kind = self.text_kind
        if kind == "note":
            if value:
                note = Note(value, self.text_lang)
                if self.tuple is None:
                    self.notes.append(note)
                else:
                    self.tuple.notes.append(note)
            return
        t = self.tuple
        assert t is not None
        if kind == "basic":
            lowered = value.lower()
            t.basic = "open" if lowered == "open" else "closed" if lowered == "closed" else None
        elif kind == "contact":
            t.contact = value or None
        else:
            t.timestamp = value or None

    def result(self) -> Presentity:
        if self.entity is None:  # expat reports a missing root itself; kept for safety
            raise PidfError("not-xml", "no root element")
        return Presentity(
            entity=self.entity,
            tuples=tuple(self.tuples),
            notes=tuple(self.notes),
            extensions=tuple(self.extensions),
        )


def _priority(raw: str | None) -> float | None:
    """RFC 3863 priority is a qvalue; anything unreadable or out of 0..1 is dropped."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None
