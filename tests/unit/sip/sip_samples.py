"""Sample SIP messages shared by the SIP core tests."""

from __future__ import annotations

PIDF = (
    b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'entity="sip:alice@example.com"><tuple id="t1"><status><basic>open</basic>'
    b"</status></tuple></presence>"
)


def notify_bytes(
    *,
    branch: str = "z9hG4bK776asdhds",
    cseq: int = 2,
    call_id: str = "a84b4c76e66710@10.0.0.1",
    body: bytes = PIDF,
    extra: bytes = b"",
) -> bytes:
    return (
        b"NOTIFY sip:b2b@10.0.0.1:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=" + branch.encode() + b";rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@example.com>;tag=1928301774\r\n"
        b"To: <sip:b2b@example.com>;tag=a73kszlfl\r\n"
        b"Call-ID: " + call_id.encode() + b"\r\n"
        b"CSeq: " + str(cseq).encode() + b" NOTIFY\r\n"
        b"Contact: <sip:alice@10.0.0.2:5060>\r\n"
        b"Event: presence\r\n"
        b"Subscription-State: active;expires=3600\r\n"
        b"Content-Type: application/pidf+xml\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def subscribe_bytes(*, branch: str = "z9hG4bKsub1", cseq: int = 1) -> bytes:
    return (
        b"SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=" + branch.encode() + b"\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:b2b@example.com>;tag=a73kszlfl\r\n"
        b"To: <sip:alice@example.com>\r\n"
        b"Call-ID: a84b4c76e66710@10.0.0.1\r\n"
        b"CSeq: " + str(cseq).encode() + b" SUBSCRIBE\r\n"
        b"Contact: <sip:b2b@10.0.0.1:5070>\r\n"
        b"Event: presence\r\n"
        b"Expires: 3600\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
