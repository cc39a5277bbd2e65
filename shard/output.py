"""What the engine hands its driver after each input (aioquic style).

The engine never performs I/O: it queues datagrams for destinations, messages
for consumers, the ids of finished subscriptions and of those that went to
rest, and the driver takes them all with ``Engine.take()`` together with the
next deadline. A datagram carries the client transaction it belongs to (None
for a response), so a send the driver cannot make comes back to the engine as
``Engine.send_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..presence.status import StatusMessage
from ..sip.transaction import ClientTransaction
from .routing import Hop

__all__ = ["Datagram", "Output", "valid_text"]

#: (bytes, where to, the client transaction that sent it or None). Where to is a
#: Destination, or a name the driver locates first (requests only).
Datagram = tuple[bytes, Hop, ClientTransaction | None]


@dataclass(slots=True, init=False)
class Output:
    """Everything one or more inputs asked for, in the order it was asked.

    Its own ``__init__``, not the generated one: one Output per engine input,
    and mypyc compiles only the former (docs/hot-path.md, round 7)."""

    datagrams: list[Datagram]
    #: Requests whose target answered 503 (RFC 3263 §4.3), with its Retry-After:
    #: the driver holds that target back before it sends the datagrams.
    refused_targets: list[tuple[ClientTransaction, float | None]]
    messages: list[StatusMessage]
    finished: list[int]
    #: Subscriptions that went to rest: what their consumer keeps of them may
    #: be packed too (it is asked for again only when a client joins).
    rested: list[int]
    deadline: float | None

    def __init__(
        self,
        *,
        datagrams: list[Datagram] | None = None,
        refused_targets: list[tuple[ClientTransaction, float | None]] | None = None,
        messages: list[StatusMessage] | None = None,
        finished: list[int] | None = None,
        rested: list[int] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.datagrams = [] if datagrams is None else datagrams
        self.refused_targets = [] if refused_targets is None else refused_targets
        self.messages = [] if messages is None else messages
        self.finished = [] if finished is None else finished
        self.rested = [] if rested is None else rested
        self.deadline = deadline

    def __bool__(self) -> bool:
        return bool(self.datagrams or self.messages or self.finished or self.rested)


def valid_text(text: str) -> str:
    """Text from the wire as valid UTF-8: the parser keeps undecodable bytes as
    lone surrogates (``surrogateescape``), which no encoder accepts."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
