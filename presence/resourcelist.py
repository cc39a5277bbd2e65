"""The state of one resource list subscription (RFC 4662), NOTIFY by NOTIFY.

A list NOTIFY is a ``multipart/related`` body: an RLMI root naming the list,
its ``version`` and whether it carries the full state, then one part per
resource instance that has a document. Partial notifications only make sense
on top of the full state they amend, so reading them needs memory of the
subscription: that is :class:`ListTracker`. It is pure (no I/O, no clock), one
per list subscription, and never raises: a body it cannot read comes back as a
flagged :class:`ResourceList` asking for a refresh.

What a consumer gets per NOTIFY is one :class:`ResourceState` per resource
instance in it (a resource without an instance yet gives one, with no state),
nested lists flattened into their resources (``list_uri`` says which list a
resource belongs to), and, on a full state, a ``removed`` state for each
resource the previous full state had and this one has not.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .body import decode, media_type
from .document import Note, Presentity
from .multipart import MAX_MULTIPART_BYTES, MAX_PARTS, Related, split_related
from .packages import PackageDocument
from .rlmi import RlmiList, RlmiResource, parse_rlmi
from .xmlsafe import BodyError

__all__ = [
    "MAX_LIST_DEPTH",
    "MAX_RESOURCES",
    "MAX_RETAINED_BYTES",
    "RLMI_TYPE",
    "ListTracker",
    "ResourceList",
    "ResourceState",
]

RLMI_TYPE: Final = "application/rlmi+xml"
_RELATED: Final = "multipart/related"
#: Lists nested in lists beyond this depth (the top list is 1) are not read.
MAX_LIST_DEPTH: Final = 4
#: What one tracker may remember: partial states can name new resources without
#: end, so the state kept is bounded in resource instances and in bytes (each
#: state weighs its msgpack size: what it would cost on the wire).
MAX_RESOURCES: Final = 10_000
MAX_RETAINED_BYTES: Final = 8 << 20
_sizer: Final = msgspec.msgpack.Encoder()


class ResourceState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One instance of one resource of a list, as a NOTIFY left it.

    ``state`` is the instance's active, pending or terminated ("" when the
    resource has no instance yet); ``reason`` says why it terminated. The
    resource's document is parsed as a status' would be: ``presentity`` for
    PIDF, ``document`` for the other packages; ``body`` is the part as received
    when neither could be read from it (so nothing is lost), and ``error``
    says why, as does a missing part. ``removed``: the list no longer has it.
    """

    list_uri: str
    uri: str
    names: tuple[Note, ...] = ()
    instance: str = ""
    state: str = ""
    reason: str = ""
    content_type: str = ""
    presentity: Presentity | None = None
    document: PackageDocument | None = None
    body: bytes = b""
    error: str = ""
    removed: bool = False


class ResourceList(msgspec.Struct, tag="resource-list", frozen=True, gc=False, omit_defaults=True):
    """What one list NOTIFY says, or what the tracker knows (``snapshot``).

    ``needs_refresh``: a notification was lost (a gap in ``version``), a partial
    state came before any full state, or the body could not be read: the
    subscriber should refresh the subscription to get the full state again.
    ``stale``: a partial state not newer than one already applied, ignored.
    ``error``/``error_kind`` say why the body could not be read at all.
    """

    uri: str = ""
    version: int | None = None
    full_state: bool = False
    names: tuple[Note, ...] = ()
    resources: tuple[ResourceState, ...] = ()
    needs_refresh: bool = False
    stale: bool = False
    error: str = ""
    error_kind: str = ""


class _Entry:
    """One resource's known instances, and what they weigh."""

    __slots__ = ("states", "weight")

    def __init__(self) -> None:
        self.states: list[ResourceState] = []
        self.weight = 0


#: A list's known state: resource URI -> its entry, in document order.
_States = dict[str, _Entry]


class _Notify:
    """What one update collects across the lists it touches."""

    __slots__ = ("count", "out", "refresh", "weight")

    def __init__(self) -> None:
        self.out: list[ResourceState] = []
        self.refresh = False
        self.count = 0  # change in remembered states
        self.weight = 0  # change in their weight

    def forget(self, entry: _Entry) -> None:
        """A remembered resource goes: its count and weight with it."""
        self.count -= len(entry.states)
        self.weight -= entry.weight

    def forget_all(self, states: _States) -> None:
        for entry in states.values():
            self.forget(entry)


class _Scope:
    """One list being applied: where its resources go."""

    __slots__ = (
        "ancestors",
        "children",
        "current",
        "depth",
        "list_uri",
        "n",
        "related",
        "states",
    )

    def __init__(
        self,
        list_uri: str,
        related: Related,
        depth: int,
        n: _Notify,
        ancestors: tuple[str, ...],
    ) -> None:
        self.list_uri = list_uri
        self.related = related
        self.depth = depth
        self.n = n
        self.ancestors = ancestors
        self.states: _States = {}
        self.children: set[str] = set()
        self.current = _Entry()

    def begin(self, uri: str) -> None:
        """A resource is described anew: what was known of it goes."""
        old = self.states.get(uri)
        if old is not None:
            self.n.forget(old)
        self.current = self.states[uri] = _Entry()

    def keep(self, state: ResourceState) -> None:
        weight = len(_sizer.encode(state))
        self.current.states.append(state)
        self.current.weight += weight
        self.n.count += 1
        self.n.weight += weight
        self.n.out.append(state)


class ListTracker:
    """Tracks one list subscription: feed it every NOTIFY's Content-Type and body.

    ``package`` is the event package of the list (RFC 4662 lists are
    homogeneous); it decides how resource parts are read. Call :meth:`reset`
    when the subscription's dialog is replaced: versions start again. Each list
    (the top one and every nested one) has its own version counter and state.
    """

    def __init__(
        self,
        package: str = "presence",
        *,
        max_depth: int = MAX_LIST_DEPTH,
        max_bytes: int = MAX_MULTIPART_BYTES,
        max_parts: int = MAX_PARTS,
        max_resources: int = MAX_RESOURCES,
        max_retained_bytes: int = MAX_RETAINED_BYTES,
    ) -> None:
        self.package = package
        self.max_depth = max_depth
        self.max_bytes = max_bytes
        self.max_parts = max_parts
        self.max_resources = max_resources
        self.max_retained_bytes = max_retained_bytes
        self._count = 0
        self._weight = 0
        self._uri = ""
        self._names: tuple[Note, ...] = ()
        self._versions: dict[str, int] = {}
        self._lists: dict[str, _States] = {}
        self._children: dict[str, set[str]] = {}

    def reset(self) -> None:
        """Forget everything: the next NOTIFY should carry the full state."""
        self._uri = ""
        self._names = ()
        self._count = self._weight = 0
        self._versions.clear()
        self._lists.clear()
        self._children.clear()

    def snapshot(self) -> ResourceList:
        """Everything known, as one full state (e.g. for a consumer that joins late)."""
        return ResourceList(
            uri=self._uri,
            version=self._versions.get(self._uri),
            full_state=True,
            names=self._names,
            resources=tuple(
                s
                for states in self._lists.values()
                for entry in states.values()
                for s in entry.states
            ),
        )

    def update(self, content_type: str | None, body: bytes) -> ResourceList:
        """Apply one NOTIFY; the result lists what it said. Never raises."""
        try:
            related, rlmi = self._open(content_type or "", body)
            if self._uri and rlmi.uri != self._uri:
                return _flagged(
                    f"rlmi: the list is {rlmi.uri}, this subscription's is {self._uri}",
                    "other-list",
                )
            n = _Notify()
            if not self._apply(rlmi, related, 1, n, ()):
                return ResourceList(rlmi.uri, rlmi.version, rlmi.full_state, rlmi.names, stale=True)
        except BodyError as e:
            return _flagged(str(e), e.kind)
        except Exception as e:  # a bug must cost one status, not the subscription
            return _flagged(f"rlmi: unexpected failure ({type(e).__name__})", "internal")
        if not self._uri or rlmi.full_state:
            self._uri, self._names = rlmi.uri, rlmi.names
        self._count += n.count
        self._weight += n.weight
        if self._count > self.max_resources or self._weight > self.max_retained_bytes:
            self.reset()  # the next full state starts again
            return ResourceList(
                rlmi.uri,
                rlmi.version,
                rlmi.full_state,
                rlmi.names,
                tuple(n.out),
                needs_refresh=True,
                error=f"rlmi: the list's state is over {self.max_resources} resource"
                f" instances or {self.max_retained_bytes} bytes; it was not kept",
                error_kind="too-large",
            )
        return ResourceList(
            rlmi.uri,
            rlmi.version,
            rlmi.full_state,
            rlmi.names,
            tuple(n.out),
            needs_refresh=n.refresh,
        )

    def _open(self, content_type: str, body: bytes) -> tuple[Related, RlmiList]:
        """Split a list body and read its RLMI root; errors say which layer failed."""
        mtype = media_type(content_type)
        if mtype != _RELATED:
            raise BodyError(
                "unsupported-type",
                f"multipart: a list body is {_RELATED}, not {mtype or 'untyped'}",
            )
        try:
            related = split_related(
                content_type, body, max_bytes=self.max_bytes, max_parts=self.max_parts
            )
        except BodyError as e:
            raise BodyError(e.kind, f"multipart: {e}") from None
        root_type = media_type(related.root.content_type)
        if root_type != RLMI_TYPE:
            raise BodyError(
                "not-rlmi", f"rlmi: the root part is {root_type or 'untyped'}, not {RLMI_TYPE}"
            )
        try:
            return related, parse_rlmi(related.root.body)
        except BodyError as e:
            raise BodyError(e.kind, f"rlmi: {e}") from None

    def _apply(
        self,
        rlmi: RlmiList,
        related: Related,
        depth: int,
        n: _Notify,
        ancestors: tuple[str, ...],
    ) -> bool:
        """Apply one list, top or nested, to its own state; False when it is stale."""
        uri = rlmi.uri
        last = self._versions.get(uri)
        if not rlmi.full_state:
            if last is None:
                n.refresh = True  # a partial state amends a full state never seen
            elif rlmi.version <= last:
                return False
            elif rlmi.version != last + 1:
                n.refresh = True  # notifications were lost in between
        self._versions[uri] = rlmi.version
        old = self._lists.get(uri, {})
        old_children = self._children.get(uri, set())
        scope = _Scope(uri, related, depth, n, ancestors)
        if not rlmi.full_state:
            scope.states, scope.children = old, old_children
        self._lists[uri] = scope.states
        self._children[uri] = scope.children
        for resource in rlmi.resources:
            self._resource(scope, resource)
        if rlmi.full_state:
            n.forget_all(old)
            for resource_uri, gone in old.items():
                if resource_uri not in scope.states and gone.states:
                    n.out.append(_removed(gone.states[0]))
            for child in old_children - scope.children:
                self._drop(child, n)
        return True

    def _resource(self, scope: _Scope, resource: RlmiResource) -> None:
        """Report one resource's instances, reading their parts. A resource in a
        notification is described whole: its instances replace those known."""
        scope.begin(resource.uri)
        if not resource.instances:  # known to the list, not subscribed to (yet)
            scope.keep(ResourceState(scope.list_uri, resource.uri, resource.names))
        for instance in resource.instances:
            base = ResourceState(
                scope.list_uri,
                resource.uri,
                resource.names,
                instance.id,
                instance.state,
                instance.reason or "",
            )
            if instance.cid is None:
                scope.keep(base)
                continue
            part = scope.related.part(instance.cid)
            if part is None:
                error = f"multipart: no body part has Content-ID <{instance.cid}>"
                scope.keep(_replace(base, error=error))
                continue
            if media_type(part.content_type) != _RELATED:
                decoded = decode(self.package, part.content_type, part.body)
                unread = decoded.presentity is None and decoded.document is None
                scope.keep(
                    _replace(
                        base,
                        content_type=part.content_type,
                        presentity=decoded.presentity,
                        document=decoded.document,
                        body=part.body if unread else b"",
                        error=decoded.error,
                    )
                )
                continue
            self._nested(scope, _replace(base, content_type=part.content_type, body=part.body))

    def _nested(self, scope: _Scope, instance: ResourceState) -> None:
        """A nested list: its resources are reported in its place, under its own URI."""
        if scope.depth >= self.max_depth:
            scope.keep(_replace(instance, error=f"rlmi: lists nested deeper than {self.max_depth}"))
            scope.n.refresh = True
            return
        try:
            related, rlmi = self._open(instance.content_type, instance.body)
        except BodyError as e:
            scope.keep(_replace(instance, error=str(e)))
            scope.n.refresh = True
            return
        if rlmi.uri == scope.list_uri or rlmi.uri in scope.ancestors:
            scope.keep(_replace(instance, error=f"rlmi: the list {rlmi.uri} is nested in itself"))
            return
        scope.children.add(rlmi.uri)
        self._apply(rlmi, related, scope.depth + 1, scope.n, (*scope.ancestors, scope.list_uri))

    def _drop(self, list_uri: str, n: _Notify) -> None:
        """A nested list left its parent: all its resources are removed."""
        for child in self._children.pop(list_uri, set()):
            self._drop(child, n)
        states = self._lists.pop(list_uri, {})
        n.forget_all(states)
        for gone in states.values():
            if gone.states:
                n.out.append(_removed(gone.states[0]))
        self._versions.pop(list_uri, None)


def _replace(state: ResourceState, **changes: object) -> ResourceState:
    return msgspec.structs.replace(state, **changes)


def _removed(gone: ResourceState) -> ResourceState:
    return ResourceState(gone.list_uri, gone.uri, gone.names, state="terminated", removed=True)


def _flagged(error: str, kind: str) -> ResourceList:
    """A NOTIFY that could not be read: the state may be behind, so refresh."""
    return ResourceList(needs_refresh=True, error=error, error_kind=kind)
