"""The QSA wire format: round trips, the exact map keys, and bad input."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.ipc import messages as m
from presence_b2b.presence.document import Note, PresenceTuple, Presentity
from presence_b2b.presence.status import Failure, FailureKind, Status, SubscriptionState


def test_subscribe_round_trips_through_the_request_decoder() -> None:
    msg = m.Subscribe(id=42, package="presence", record="sip:bob@b.example", subscriber="sip:a@a")
    assert m.decode_request(m.encode(msg)) == msg


def test_unsubscribe_round_trips_through_the_request_decoder() -> None:
    assert m.decode_request(m.encode(m.Unsubscribe(id=7))) == m.Unsubscribe(id=7)


def test_subscribe_is_a_map_whose_first_key_is_type() -> None:
    msg = m.Subscribe(id=1, package="presence", record="sip:b@x", subscriber="sip:a@x")
    raw = msgspec.msgpack.decode(m.encode(msg))
    assert list(raw) == ["type", "id", "package", "record", "subscriber"]
    assert raw["type"] == "subscribe"


def test_subscribe_encodes_to_the_bytes_the_protocol_doc_shows() -> None:
    msg = m.Subscribe(id=1, package="presence", record="sip:b@x", subscriber="sip:a@x")
    assert m.encode(msg).hex() == (
        "85a474797065a9737562736372696265a2696401a77061636b616765a870726573656e6365"
        "a67265636f7264a77369703a624078aa73756273637269626572a77369703a614078"
    )


def test_status_encodes_to_the_bytes_the_protocol_doc_shows() -> None:
    msg = Status(
        id=1,
        state=SubscriptionState.ACTIVE,
        presentity=Presentity(entity="sip:b@x", tuples=(PresenceTuple(id="t", basic="open"),)),
        content_type="application/pidf+xml",
        body=b"<p/>",
    )
    assert m.encode(msg).hex() == (
        "86a474797065a6737461747573a2696401a57374617465a6616374697665aa70726573656e74"
        "69747982a6656e74697479a77369703a624078a67475706c65739182a26964a174a562617369"
        "63a46f70656eac636f6e74656e745f74797065b46170706c69636174696f6e2f706964662b78"
        "6d6ca4626f6479c4043c702f3e"
    )


def test_status_and_failure_round_trip_through_the_status_decoder() -> None:
    status = Status(
        id=3,
        state=SubscriptionState.ACTIVE,
        presentity=Presentity(
            entity="pres:b@x",
            tuples=(PresenceTuple(id="t1", basic="open", notes=(Note("here", "en"),)),),
        ),
        content_type="application/pidf+xml",
        body=b"<presence/>",
        merged=2,
    )
    failure = Failure(id=4, kind=FailureKind.SIP_ERROR, code=403, detail="Forbidden")
    assert m.decode_status(m.encode(status)) == status
    assert m.decode_status(m.encode(failure)) == failure


def test_status_decoder_accepts_a_memoryview() -> None:
    data = bytearray(m.encode(Failure(id=1, kind=FailureKind.TIMEOUT, retry_in=5.0)))
    assert m.decode_status(memoryview(data)).id == 1


def test_every_control_message_round_trips() -> None:
    msgs: list[m.ControlMessage] = [
        m.Hello(version=m.PROTOCOL_VERSION, role="client", name="rls"),
        m.Welcome(1, 9, 2, 4096, 8192, fds=9),
        m.MoreFds(offset=252),
        m.Refused("no"),
        m.AdminRequest("list", {"record": "sip:b@x"}),
        m.AdminReply(ok=True, data={"clients": [1, 2], "name": "x"}),
    ]
    for msg in msgs:
        assert m.decode_control(m.encode(msg)) == msg


def test_unknown_map_keys_are_ignored_for_forward_compatibility() -> None:
    raw = {"type": "unsubscribe", "id": 5, "from_a_future_version": [1, 2]}
    assert m.decode_request(msgspec.msgpack.encode(raw)) == m.Unsubscribe(id=5)


def test_garbage_raises_protocol_error() -> None:
    with pytest.raises(m.ProtocolError, match="bad request message"):
        m.decode_request(b"\xc1garbage")


def test_a_status_on_the_request_ring_raises_protocol_error() -> None:
    with pytest.raises(m.ProtocolError):
        m.decode_request(m.encode(Failure(id=1, kind=FailureKind.TIMEOUT)))


def test_negative_id_is_rejected() -> None:
    raw = msgspec.msgpack.encode({"type": "unsubscribe", "id": -1})
    with pytest.raises(m.ProtocolError):
        m.decode_request(raw)


def test_largest_u64_id_is_accepted() -> None:
    assert m.decode_request(m.encode(m.Unsubscribe(id=m.MAX_ID))).id == m.MAX_ID


def test_empty_record_is_rejected() -> None:
    raw = m.encode(m.Subscribe(id=1, package="presence", record="", subscriber="sip:a@x"))
    with pytest.raises(m.ProtocolError):
        m.decode_request(raw)


def test_oversize_control_packet_raises_protocol_error() -> None:
    with pytest.raises(m.ProtocolError, match="exceeds"):
        m.decode_control(b"\x00" * (m.MAX_CONTROL_PACKET + 1))


def test_long_list_admin_reply_is_split_into_packets_that_fit() -> None:
    reply = m.AdminReply(
        ok=True, data=[{"record": f"sip:user{i}@example.com"} for i in range(5000)]
    )
    packets = m.split_admin_reply(reply, limit=4096)
    assert len(packets) > 1
    assert all(len(p) <= 4096 for p in packets)
    parts = [m.decode_control(p) for p in packets]
    assert all(isinstance(p, m.AdminReply) for p in parts)
    assert [p.more for p in parts if isinstance(p, m.AdminReply)] == [True] * (len(parts) - 1) + [
        False
    ]
    joined = [item for p in parts if isinstance(p, m.AdminReply) for item in p.data]
    assert joined == reply.data


def test_oversize_non_list_admin_reply_becomes_an_error_reply() -> None:
    [packet] = m.split_admin_reply(m.AdminReply(ok=True, data="x" * 10000), limit=4096)
    reply = m.decode_control(packet)
    assert isinstance(reply, m.AdminReply)
    assert not reply.ok
    assert "too large" in reply.error


@given(st.binary(max_size=256))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    for decode in (m.decode_request, m.decode_status, m.decode_control):
        with contextlib.suppress(m.ProtocolError):
            decode(data)


def test_statuses_round_trip_as_one_array_that_is_not_a_single_status() -> None:
    statuses = [
        Status(3, SubscriptionState.ACTIVE, "x", list="sip:l@example.com", resource="sip:x@a"),
        Failure(3, FailureKind.TIMEOUT, detail="gone"),
    ]
    data = m.encode_statuses(statuses)
    assert m.decode_statuses(data) == statuses
    with pytest.raises(m.ProtocolError):
        m.decode_status(data)
