"""The QSA wire format: every message a client and the service exchange.

Each message is one msgpack map with a ``"type"`` key naming it (msgspec's
tagged structs; the tag is the map's first key). ``docs/qsa-protocol.md`` is the
normative description, precise enough for a client in another language; keep it
in step with this file.

Three families travel on three kinds of channel:

* requests, client -> service, one per record of the client's request ring;
* status messages, shard -> client, one per record of a status ring
  (``presence.status.Status`` and ``Failure``, reused as they are);
* control messages, on the SEQPACKET control socket, one per packet.

Encoders and decoders are module singletons: building them costs more than a
decode, and status decoding is the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

import msgspec

from ..presence.status import Failure, Status, StatusMessage

PROTOCOL_VERSION: Final = 1
"""Bumped only for incompatible changes; adding a field with a default is compatible
because both sides ignore map keys they do not know."""

MAX_CONTROL_PACKET: Final = 65536
"""Largest control packet either side sends or accepts; bigger is a protocol error."""

MAX_SHARDS: Final = 1024
"""Upper bound a client accepts for ``Welcome.shards`` (a sanity check on the peer)."""

FDS_PER_RING: Final = 3
"""memfd, data eventfd, space eventfd: the order ``Ring.fds()`` gives them in."""

MAX_FDS_PER_PACKET: Final = 252
"""Linux passes at most 253 fds in one message (SCM_MAX_FD); 252 is a whole
number of rings. Welcomes that need more are followed by ``MoreFds`` packets."""

MAX_ID: Final = (1 << 64) - 1
MAX_URI_LENGTH: Final = 4096

SubscriptionId = Annotated[int, msgspec.Meta(ge=0)]  # msgpack ints stop at 2**64-1
Uri = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URI_LENGTH)]
Package = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class ProtocolError(ValueError):
    """Bytes from a peer that are not a valid QSA message of the expected family."""


# ---------------------------------------------------------------- requests


class Subscribe(msgspec.Struct, tag="subscribe", frozen=True, gc=False):
    """Ask for the presence of ``record`` as ``subscriber``.

    ``id`` is chosen by the client, unique among its live subscriptions on this
    connection, and names the subscription in every status that comes back.
    """

    id: SubscriptionId
    package: Package
    record: Uri
    subscriber: Uri


class Unsubscribe(msgspec.Struct, tag="unsubscribe", frozen=True, gc=False):
    """End subscription ``id``; a final ``Status(terminated, "unsubscribed")`` follows."""

    id: SubscriptionId


Request = Subscribe | Unsubscribe


# ---------------------------------------------------------------- control socket

Role = Literal["client", "admin"]


class Hello(msgspec.Struct, tag="hello", frozen=True, gc=False):
    """First packet from the connecting side; ``name`` shows up in admin listings."""

    version: int
    role: Role
    name: str = ""


class Welcome(msgspec.Struct, tag="welcome", frozen=True, gc=False):
    """Answer to a client Hello; the packet carries the ring fds (see the protocol doc).

    ``fds`` is the total number of fds the client is about to receive:
    3 for the request ring then 3 per shard status ring. When that is more than
    ``MAX_FDS_PER_PACKET``, the rest follow in ``MoreFds`` packets.
    """

    version: int
    client_id: int
    shards: int
    request_ring_bytes: int
    status_ring_bytes: int
    fds: int = 0


class MoreFds(msgspec.Struct, tag="more-fds", frozen=True, gc=False):
    """Continuation of a Welcome whose fds do not fit in one packet."""

    offset: int


class Refused(msgspec.Struct, tag="refused", frozen=True, gc=False):
    """Sent just before the service closes a connection it will not serve."""

    reason: str


#: The commands of ``presence-b2b ctl`` the supervisor answers.
ADMIN_COMMANDS = ("stats", "memory", "list", "show", "kill", "refresh", "clients")


class AdminRequest(msgspec.Struct, tag="admin", frozen=True, gc=False):
    """One command of ``presence-b2b ctl`` (:data:`ADMIN_COMMANDS`)."""

    command: str
    args: dict[str, str] = msgspec.field(default_factory=dict)


class AdminReply(msgspec.Struct, tag="admin-reply", frozen=True, gc=False):
    """Answer to one AdminRequest. ``data`` is any JSON-able value.

    A reply whose ``data`` is a list too long for one packet is split over
    several replies; all but the last have ``more`` set, and the receiver
    concatenates their lists.
    """

    ok: bool
    data: Any = None
    error: str = ""
    more: bool = False


ControlMessage = Hello | Welcome | MoreFds | Refused | AdminRequest | AdminReply


# ---------------------------------------------------------------- codecs

_encoder: Final = msgspec.msgpack.Encoder()
_request_decoder: Final[msgspec.msgpack.Decoder[Request]] = msgspec.msgpack.Decoder(Request)
_status_decoder: Final[msgspec.msgpack.Decoder[StatusMessage]] = msgspec.msgpack.Decoder(
    StatusMessage
)
_control_decoder: Final[msgspec.msgpack.Decoder[ControlMessage]] = msgspec.msgpack.Decoder(
    ControlMessage
)
_statuses_decoder: Final[msgspec.msgpack.Decoder[list[StatusMessage]]] = (
    msgspec.msgpack.Decoder(list[StatusMessage])
)


def encode(message: Request | StatusMessage | ControlMessage) -> bytes:
    """msgpack bytes of any QSA message (one ring record or one control packet)."""
    return _encoder.encode(message)


def _decode_error(family: str, data: bytes | memoryview, exc: Exception) -> ProtocolError:
    return ProtocolError(f"bad {family} message ({len(data)} bytes): {exc}")


def decode_request(data: bytes | memoryview) -> Request:
    """One record of a request ring."""
    try:
        return _request_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _decode_error("request", data, exc) from None


def encode_statuses(statuses: Sequence[StatusMessage]) -> bytes:
    """Several statuses as one msgpack array (a resource list's, kept in the store)."""
    return _encoder.encode(list(statuses))


def decode_statuses(data: bytes | memoryview) -> list[StatusMessage]:
    """What :func:`encode_statuses` wrote."""
    try:
        return _statuses_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _decode_error("status list", data, exc) from None


def decode_status(data: bytes | memoryview) -> StatusMessage:
    """One record of a status ring."""
    try:
        return _status_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _decode_error("status", data, exc) from None


def decode_control(data: bytes | memoryview) -> ControlMessage:
    """One control-socket packet."""
    if len(data) > MAX_CONTROL_PACKET:
        raise ProtocolError(f"control packet of {len(data)} bytes exceeds {MAX_CONTROL_PACKET}")
    try:
        return _control_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _decode_error("control", data, exc) from None


def split_admin_reply(reply: AdminReply, limit: int = MAX_CONTROL_PACKET) -> list[bytes]:
    """Encode ``reply`` as one or more packets of at most ``limit`` bytes.

    Only a list ``data`` can be split; anything else that is too big becomes an
    error reply, so the admin tool gets an answer instead of a dead socket.
    """
    packet = encode(reply)
    if len(packet) <= limit:
        return [packet]
    data = reply.data
    if not isinstance(data, list) or len(data) < 2:
        too_big = AdminReply(ok=False, error=f"reply of {len(packet)} bytes is too large")
        return [encode(too_big)]
    half = len(data) // 2
    first = AdminReply(ok=reply.ok, data=data[:half], error=reply.error, more=True)
    rest = AdminReply(ok=reply.ok, data=data[half:], error=reply.error, more=reply.more)
    return split_admin_reply(first, limit) + split_admin_reply(rest, limit)


__all__ = [
    "ADMIN_COMMANDS",
    "FDS_PER_RING",
    "MAX_CONTROL_PACKET",
    "MAX_FDS_PER_PACKET",
    "MAX_ID",
    "MAX_SHARDS",
    "MAX_URI_LENGTH",
    "PROTOCOL_VERSION",
    "AdminReply",
    "AdminRequest",
    "ControlMessage",
    "Failure",
    "Hello",
    "MoreFds",
    "ProtocolError",
    "Refused",
    "Request",
    "Status",
    "Subscribe",
    "Unsubscribe",
    "Welcome",
    "decode_control",
    "decode_request",
    "decode_status",
    "decode_statuses",
    "encode",
    "encode_statuses",
    "split_admin_reply",
]
