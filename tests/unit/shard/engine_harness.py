"""An engine on a fake clock whose output is taken after every input, and the
presence server's side of the exchange, for the engine's tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from presence_b2b.presence.status import StatusMessage
from presence_b2b.shard.auth import CredentialLookup
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.engine import Engine, LocalEndpoint
from presence_b2b.shard.observer import RecordingObserver
from presence_b2b.sip.message import Request, Response, parse_message

from presence_b2b.config import B2BParams, SipSettings

SERVER = ("127.0.0.1", 5090)
RECORD = "sip:alice@127.0.0.1:5090"
SUBSCRIBER = "sip:bob@example.com"
PIDF_OPEN = (
    b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@x">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple><note>here</note></presence>'
)


def at(host: str, port: int) -> Destination:
    """A UDP destination, as the engine names one."""
    return Destination(Transport.UDP, host, port)


def response_to(
    req: Request, code: int, *headers: tuple[str, str], tag: str = "srv1"
) -> Response:
    """The presence server's response to one of our SUBSCRIBEs."""
    resp = Response(code, "OK" if code < 300 else "Error")
    for name in ("Via", "From", "Call-ID", "CSeq"):
        resp.add(name, req.get(name) or "")
    to = req.get("To") or ""
    resp.add("To", to if ";tag=" in to else f"{to};tag={tag}")
    for name, value in headers:
        resp.add(name, value)
    return resp


def probe(method: str = "OPTIONS", *extra: tuple[str, str], via_params: str = "") -> Request:
    """An out-of-dialog request from the peer (an OPTIONS keep-alive probe by default)."""
    req = Request(method, "sip:127.0.0.1:5070")
    for name, value in (
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK{method}{via_params}"),
        ("From", "<sip:probe@x>;tag=p"),
        ("To", "<sip:127.0.0.1:5070>"),
        ("Call-ID", f"probe-{method}"),
        ("CSeq", f"1 {method}"),
        *extra,
    ):
        req.add(name, value)
    return req


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """The engine plus what a driver would do with its output: ``sent`` holds the
    parsed datagrams with their destination, ``delivered`` the consumer messages,
``finished`` and ``rested`` the ids the output named so.
    ``refuse`` names why a destination cannot be sent to ("" = it can)."""

    def __init__(
        self,
        *,
        subscribe_rate: float = 0.0,
        sip: SipSettings | None = None,
        credentials: CredentialLookup | None = None,
        journal: bool = False,
        **params: object,
    ) -> None:
        self.clock = Clock()
        self.obs = RecordingObserver()
        self.sent: list[tuple[Request | Response, Destination]] = []
        self.delivered: list[StatusMessage] = []
        self.finished: list[int] = []
        self.rested: list[int] = []
        self.deadline: float | None = None
        self.refuse: Callable[[Destination], str] = lambda dest: ""
        self.engine = Engine(
            dataclasses.replace(B2BParams(), **params),  # type: ignore[arg-type]
            sip or SipSettings(),
            LocalEndpoint("127.0.0.1", 5070),
            clock=self.clock,
            observer=self.obs,
            subscribe_rate=subscribe_rate,
            credentials=credentials,
            journal=journal,
        )
        self.notify_cseq = 1

    # inputs, each followed by what a driver does with the output -------------

    def pump(self) -> None:
        for _ in range(8):
            out = self.engine.take()
            self.deadline = out.deadline
            self.delivered.extend(out.messages)
            self.finished.extend(out.finished)
            self.rested.extend(out.rested)
            failed = False
            for data, dest, ref in out.datagrams:
                problem = self.refuse(dest)
                if problem:
                    self.engine.send_failed(ref, problem)
                    failed = True
                else:
                    self.sent.append((parse_message(data), dest))
            if not failed:
                return

    def subscribe(self, sub_id: int, record: str = RECORD, subscriber: str = SUBSCRIBER) -> None:
        self.engine.subscribe(sub_id, record, subscriber)
        self.pump()

    def unsubscribe(self, sub_id: int) -> bool:
        ok = self.engine.unsubscribe(sub_id)
        self.pump()
        return ok

    def refresh(self, sub_id: int) -> bool:
        ok = self.engine.refresh(sub_id)
        self.pump()
        return ok

    def datagram(self, data: bytes, addr: tuple[str, int] = SERVER) -> None:
        self.engine.datagram_received(data, addr)
        self.pump()

    def feed(self, msg: Request | Response, addr: tuple[str, int] = SERVER) -> None:
        self.datagram(msg.to_bytes(), addr)

    def advance(self, seconds: float) -> None:
        target = self.clock.now + seconds
        while True:
            deadline = self.engine.next_deadline()
            if deadline is None or deadline > target:
                break
            self.clock.now = max(self.clock.now, deadline)
            self.engine.on_timer()
            self.pump()
        self.clock.now = target

    # what went out -----------------------------------------------------------

    def requests(self, method: str = "SUBSCRIBE") -> list[Request]:
        return [m for m, _ in self.sent if isinstance(m, Request) and m.method == method]

    def responses(self) -> list[Response]:
        return [m for m, _ in self.sent if isinstance(m, Response)]

    # the presence server's side ----------------------------------------------

    def answer(self, req: Request, code: int, *headers: tuple[str, str]) -> Response:
        resp = response_to(req, code, *headers)
        self.feed(resp)
        return resp

    def notify_request(
        self, sub: Request, state: str, body: bytes = b"", *, tag: str = "srv1", branch: str = ""
    ) -> Request:
        self.notify_cseq += 1
        n = Request("NOTIFY", "sip:127.0.0.1:5070")
        n.add("Via", f"SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK{branch or self.notify_cseq}x")
        n.add("From", f"<{RECORD}>;tag={tag}")
        n.add("To", sub.get("From") or "")
        n.add("Call-ID", sub.get("Call-ID") or "")
        n.add("CSeq", f"{self.notify_cseq} NOTIFY")
        n.add("Event", "presence")
        n.add("Subscription-State", state)
        n.add("Contact", "<sip:127.0.0.1:5090>")
        if body:
            n.add("Content-Type", "application/pidf+xml")
        n.body = body
        return n

    def notify(
        self, sub: Request, state: str, body: bytes = b"", *, tag: str = "srv1", branch: str = ""
    ) -> Request:
        n = self.notify_request(sub, state, body, tag=tag, branch=branch)
        self.feed(n)
        return n

    def established(self, sub_id: int = 1) -> Request:
        """Subscribe, answer 200 Expires 600, NOTIFY active: the usual start."""
        self.subscribe(sub_id)
        first = self.requests()[-1]
        self.answer(first, 200, ("Expires", "600"), ("Contact", "<sip:127.0.0.1:5090>"))
        self.notify(first, "active;expires=600", PIDF_OPEN)
        return first
