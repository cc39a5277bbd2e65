"""A subscriber driven by hand from a test, for layers not wired into the engine yet.

`HandUac` owns one UDP socket on 127.0.0.1 and builds each SUBSCRIBE of one dialog
with sip.message: initial until a 2xx gives the remote tag and target, in-dialog
after. It answers every NOTIFY with 200, also those that cross a SUBSCRIBE, so a
test only says what to send and reads what came back.
"""

from __future__ import annotations

import itertools
import socket
import uuid
from collections.abc import Iterable

from presence_b2b.sip.headers import parse_name_addr, parse_via
from presence_b2b.sip.message import Request, Response, parse_message

from tests.peers.ports import LOOPBACK

__all__ = ["HandUac"]


class HandUac:
    """One SUBSCRIBE dialog from `from_uri` to `to_uri`, sent to host:port."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        from_uri: str,
        to_uri: str,
        request_uri: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.peer = (host, port)
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.request_uri = request_uri or to_uri
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(timeout)
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:10]
        self._cseq = itertools.count(1)
        self.remote_tag = ""
        self.remote_target = ""
        self.notifies: list[Request] = []
        self._taken = 0

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def subscribe(self, expires: int = 60, headers: Iterable[tuple[str, str]] = ()) -> Request:
        """The dialog's next SUBSCRIBE (new branch, next CSeq), not sent yet."""
        to = f"<{self.to_uri}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        user = self.from_uri.partition(":")[2].partition("@")[0]
        return Request(
            "SUBSCRIBE",
            self.remote_target or self.request_uri,
            [
                ("Via", f"SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{uuid.uuid4().hex}"),
                ("Max-Forwards", "70"),
                ("From", f"<{self.from_uri}>;tag={self.tag}"),
                ("To", to),
                ("Call-ID", self.call_id),
                ("CSeq", f"{next(self._cseq)} SUBSCRIBE"),
                ("Contact", f"<sip:{user}@{LOOPBACK}:{self.port}>"),
                ("Event", "presence"),
                ("Accept", "application/pidf+xml"),
                ("Expires", str(expires)),
                *headers,
            ],
        )

    def send(self, request: Request) -> Response:
        """Send a SUBSCRIBE and return its final response; a 2xx to the first one
        sets the remote tag and target (RFC 3261 §12.1.2)."""
        self.sock.sendto(request.to_bytes(), self.peer)
        while True:
            message = self._receive()
            if isinstance(message, Response) and message.status >= 200:
                if 200 <= message.status < 300 and not self.remote_tag:
                    self.remote_tag = parse_name_addr(message.get("To") or "").tag or ""
                    self.remote_target = parse_name_addr(message.get("Contact") or "").uri
                return message

    def wait_notify(self) -> Request:
        """The next NOTIFY not seen yet (it was answered when it arrived)."""
        while len(self.notifies) == self._taken:
            self._receive()
        self._taken += 1
        return self.notifies[self._taken - 1]

    def _receive(self) -> Request | Response:
        data, _ = self.sock.recvfrom(65535)
        message = parse_message(data)
        if isinstance(message, Request):
            self._answer(message)
        return message

    def _answer(self, request: Request) -> None:
        names = ("Via", "From", "To", "Call-ID", "CSeq")
        ok = Response(200, "OK", [(n, v) for n, v in request.headers if n in names])
        via = parse_via(request.get_all("Via")[0])
        self.sock.sendto(ok.to_bytes(), (via.received or via.host, via.rport or via.port or 5060))
        if request.method == "NOTIFY" and request not in self.notifies:
            self.notifies.append(request)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HandUac:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
