"""A 503 from one server of a name is no answer yet (RFC 3263 §4.3)."""

from __future__ import annotations

from engine_harness import SUBSCRIBER, Harness, response_to
from presence_b2b.presence.status import Failure, FailureKind
from presence_b2b.shard.resolver import SipTarget

NAMED = "sip:alice@pres.example.com"


def test_a_503_to_a_named_record_sends_the_request_again_for_the_next_target() -> None:
    h = Harness()
    h.subscribe(1, NAMED)
    first = h.requests()[-1]
    h.engine.datagram_received(
        response_to(first, 503, ("Retry-After", "30")).to_bytes(), ("127.0.0.1", 5090)
    )
    out = h.engine.take()
    refused = out.refused_targets
    retries = [d for d, _, _ in out.datagrams if d.startswith(b"SUBSCRIBE ")]
    assert [r for _, r in refused] == [30.0]
    assert len(retries) == 1 and b"CSeq: 2 SUBSCRIBE" in retries[0]
    assert out.messages == [], "no failure while targets may remain"
    assert isinstance(out.datagrams[-1][1], SipTarget)


def test_a_503_to_an_ip_literal_is_the_answer() -> None:
    h = Harness()
    h.subscribe(1)
    h.answer(h.requests()[-1], 503)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and (failure.kind, failure.code) == (
        FailureKind.SIP_ERROR, 503
    )
    assert len(h.requests()) == 1


def test_after_a_few_503s_the_last_one_is_the_answer() -> None:
    h = Harness()
    h.subscribe(1, NAMED, SUBSCRIBER)
    for _ in range(10):
        if h.delivered:
            break
        h.answer(h.requests()[-1], 503)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.code == 503
    assert len(h.requests()) == 5  # the first and four more targets

