"""A quiet dialog's last status, packed: what is unpacked is what was packed,
in a fraction of the bytes."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.presence.status import (
    Failure,
    FailureKind,
    Status,
    StatusMessage,
    SubscriptionState,
)
from presence_b2b.shard.kept_status import pack, unpack

SMALL_PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:r123456@example.com">\r\n'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple>\r\n'
    b"</presence>\r\n"
)


def test_a_small_pidf_status_packs_to_under_half_of_what_it_held() -> None:
    status = Status(7, SubscriptionState.ACTIVE, "", None, "application/pidf+xml", SMALL_PIDF)
    packed = pack(status)
    assert unpack(packed) == status
    assert sys.getsizeof(packed) * 2 < sys.getsizeof(status) + sys.getsizeof(SMALL_PIDF)


@pytest.mark.parametrize(
    "msg",
    [
        Status(1, SubscriptionState.TERMINATED, "timeout"),
        Status(2, SubscriptionState.PENDING, "", body=b"\x00\xff" * 3000, content_type="x/y"),
        Status(3, SubscriptionState.ACTIVE, error="not PIDF: bad", merged=4),
        Failure(4, FailureKind.SIP_ERROR, code=403, detail="Forbidden", retry_in=30.0),
        Failure(5, FailureKind.TERMINATED, detail="notifier: «rejected»"),
    ],
)
def test_what_is_unpacked_is_what_was_packed(msg: StatusMessage) -> None:
    assert unpack(pack(msg)) == msg


@given(
    st.integers(0, 2**63 - 1),
    st.sampled_from(list(SubscriptionState)),
    st.text(),
    st.text(),
    st.binary(max_size=4000),
)
def test_any_status_unpacks_to_itself(
    sub_id: int, state: SubscriptionState, reason: str, ctype: str, body: bytes
) -> None:
    status = Status(sub_id, state, reason, content_type=ctype, body=body)
    assert unpack(pack(status)) == status


def test_a_status_with_text_no_encoder_takes_is_refused_when_packed() -> None:
    with pytest.raises(UnicodeEncodeError):
        pack(Status(1, SubscriptionState.ACTIVE, "\udcff"))
