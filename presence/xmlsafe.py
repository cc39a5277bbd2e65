"""The one locked-down expat set-up every XML body parser uses.

NOTIFY bodies come from the network, so every XML parser here refuses rather
than interprets: no DOCTYPE (hence no entity is ever declared, expanded or
loaded), and size, nesting depth and element count are bounded. The PIDF
parser drives expat with its own fast callbacks; the other document parsers
(dialog-info, reginfo, watcherinfo, RLMI) read a small bounded tree built by
:func:`parse_tree`. Both get their parser and their error handling from here,
so the lock-down exists once.
"""

from __future__ import annotations

from typing import Final, TypedDict, Unpack
from xml.parsers.expat import (
    XML_PARAM_ENTITY_PARSING_NEVER,
    ExpatError,
    ParserCreate,
    XMLParserType,
)

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "SEP",
    "XML_LANG",
    "BodyError",
    "Element",
    "Limits",
    "check_size",
    "expect_root",
    "int_attr",
    "int_text",
    "locked_parser",
    "parse_tree",
    "read_document",
    "run",
    "split_name",
]

#: Default limits, shared by every XML body parser (docs/status-messages.md).
MAX_BYTES: Final = 256 * 1024
MAX_DEPTH: Final = 32
MAX_ELEMENTS: Final = 10_000

# expat reports a name as "uri local prefix" (namespace_prefixes on), "uri local"
# (default namespace) or "local" (no namespace). expat itself refuses a
# namespace URI that contains the separator, so splitting on it is unambiguous.
SEP: Final = " "
_XML_NS: Final = "http://www.w3.org/XML/1998/namespace"
#: ``xml:lang`` as :class:`Element` attributes name it.
XML_LANG: Final = _XML_NS + SEP + "lang"


class BodyError(ValueError):
    """A body that is not a document this service accepts.

    ``kind`` is short and stable (for metrics and tests): ``not-xml``,
    ``not-pidf`` (and ``not-<format>`` for the other formats), ``too-large``,
    ``too-deep``, ``too-many-elements``, ``too-many-parts``, ``forbidden-dtd``,
    ``forbidden-entity``, ``bad-multipart``, ``unsupported-type``. The message
    says what was wrong in words a log reader understands. Every body reader
    raises it, the text and multipart ones too: one error for the dispatcher to
    catch.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def check_size(body: bytes, max_bytes: int) -> None:
    """Refuse an oversize body before any parsing: this bounds every text and attribute."""
    if len(body) > max_bytes:
        raise BodyError("too-large", f"document is {len(body)} bytes, the limit is {max_bytes}")


def locked_parser() -> XMLParserType:
    """A namespace-aware expat parser that refuses any DTD or entity declaration.

    The caller installs its element and text handlers and then calls :func:`run`.
    """
    parser = ParserCreate(namespace_separator=SEP)
    parser.namespace_prefixes = True
    parser.buffer_text = True
    parser.SetParamEntityParsing(XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external_entity
    return parser


def run(parser: XMLParserType, body: bytes) -> None:
    """Feed the whole body; every failure becomes a BodyError, nothing else escapes."""
    try:
        parser.Parse(body, True)
    except BodyError:
        raise
    except ExpatError as e:
        raise BodyError("not-xml", f"not well-formed XML: {e}") from None
    except (TypeError, ValueError, LookupError) as other:  # e.g. an encoding Python lacks
        raise BodyError("not-xml", f"cannot parse the body: {other}") from None


def _refuse_doctype(*_: object) -> None:
    raise BodyError("forbidden-dtd", "a DOCTYPE is not allowed in a NOTIFY body")


def _refuse_entity(*_: object) -> None:
    raise BodyError("forbidden-entity", "entity declarations are not allowed")


def _refuse_external_entity(*_: object) -> int:
    raise BodyError("forbidden-entity", "external entities are not allowed")


def split_name(name: str) -> tuple[str, str]:
    """(namespace URI, local name) of an expat name; the URI is "" in no namespace."""
    parts = name.split(SEP)
    if len(parts) == 1:
        return "", name
    return parts[0], parts[1]


class Element:
    """One element of a bounded document tree: just what the readers need.

    ``attrs`` are keyed by local name when unqualified and by ``"uri local"``
    when qualified (so ``xml:lang`` is :data:`XML_LANG`), whatever prefix the
    document used. ``text`` is the element's own character data, without its
    children's.
    """

    __slots__ = ("attrs", "children", "local", "texts", "uri")

    def __init__(self, uri: str, local: str, attrs: dict[str, str]) -> None:
        self.uri = uri
        self.local = local
        self.attrs = attrs
        self.children: list[Element] = []
        self.texts: list[str] = []

    @property
    def text(self) -> str:
        """The element's own text, trimmed of XML whitespace."""
        return "".join(self.texts).strip(" \t\r\n")

    def named(self, uri: str, local: str) -> list[Element]:
        """The children with this namespace URI and local name, in document order."""
        return [c for c in self.children if c.local == local and c.uri == uri]

    def first(self, uri: str, local: str) -> Element | None:
        """The first child with this name (repeated singletons: the first wins)."""
        for c in self.children:
            if c.local == local and c.uri == uri:
                return c
        return None


class _TreeBuilder:
    __slots__ = ("count", "max_depth", "max_elements", "root", "stack")

    def __init__(self, max_depth: int, max_elements: int) -> None:
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.count = 0
        self.stack: list[Element] = []
        self.root: Element | None = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.count += 1
        if self.count > self.max_elements:
            raise BodyError(
                "too-many-elements", f"more than {self.max_elements} elements in the document"
            )
        if len(self.stack) >= self.max_depth:
            raise BodyError("too-deep", f"elements nested deeper than {self.max_depth}")
        uri, local = split_name(name)
        keyed = {}
        for aname, value in attrs.items():
            auri, alocal = split_name(aname)
            keyed[f"{auri}{SEP}{alocal}" if auri else alocal] = value
        element = Element(uri, local, keyed)
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element
        self.stack.append(element)

    def end(self, _name: str) -> None:
        self.stack.pop()

    def text(self, data: str) -> None:
        if self.stack:
            self.stack[-1].texts.append(data)


class Limits(TypedDict, total=False):
    """The limits every XML reader takes as keyword arguments (defaults above)."""

    max_bytes: int
    max_depth: int
    max_elements: int


def read_document(
    body: bytes, namespace: str, root: str, fmt: str, **limits: Unpack[Limits]
) -> Element:
    """The root of a ``fmt`` document whose root must be ``root`` in ``namespace``
    (or in no namespace), or BodyError."""
    element = parse_tree(body, **limits)
    expect_root(element, namespace, root, fmt)
    return element


def parse_tree(
    body: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
) -> Element:
    """The document's root element, or BodyError. Comments and PIs are dropped."""
    check_size(body, max_bytes)
    parser = locked_parser()
    builder = _TreeBuilder(max_depth, max_elements)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.text
    run(parser, body)
    if builder.root is None:  # expat reports a missing root itself; kept for safety
        raise BodyError("not-xml", "no root element")
    return builder.root


def expect_root(root: Element, namespace: str, local: str, fmt: str) -> None:
    """Refuse a document whose root is not ``local`` in ``namespace`` (or no namespace)."""
    if root.local != local or root.uri not in (namespace, ""):
        what = f"{{{root.uri}}}{root.local}" if root.uri else root.local
        raise BodyError(f"not-{fmt}", f"the root element is {what}, not a {fmt} {local}")


def int_attr(element: Element, name: str) -> int | None:
    """A non-negative integer attribute, None when absent or unreadable (lenient)."""
    raw = element.attrs.get(name)
    return None if raw is None else _natural(raw)


def int_text(element: Element | None) -> int | None:
    """A non-negative integer element's value, None when absent or unreadable."""
    return None if element is None else _natural(element.text)


def _natural(raw: str) -> int | None:
    raw = raw.strip(" \t\r\n")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        return None
    return int(raw)
