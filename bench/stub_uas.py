"""A tiny presence server on 127.0.0.1 for bench/capacity.py: 200 + NOTIFY, no dialog state.

Run: ``.venv/bin/python bench/stub_uas.py --port P [--expires E]``; prints
``ready PORT`` once bound, and one JSON line of counters when stopped (SIGTERM or
SIGINT).

Why not SIPp: the capacity run holds 10^5-10^6 idle dialogs for minutes. SIPp
keeps a call object, its variables and its timers for every dialog and walks
them from its scheduler; this stub keeps nothing per dialog at all, so the
memory and CPU the run measures are the service's.

Behaviour (RFC 6665 notifier, as little as the subscriber needs):

* SUBSCRIBE without a To tag: 200 with a To tag derived from the Call-ID (a
  retransmitted SUBSCRIBE gets the same one), ``Expires: min(asked, --expires)``
  and a Contact; then a NOTIFY ``active`` with a small PIDF document.
* SUBSCRIBE in a dialog (refresh): the same 200 and NOTIFY; with ``Expires: 0``
  (unsubscribe) the NOTIFY is ``terminated;reason=timeout`` without a body.
* NOTIFYs go to the subscriber's Contact; CSeq comes from one counter for the
  whole stub, so it grows within every dialog without remembering any dialog.
  Unanswered NOTIFYs are resent after T1 = 0.5 s, doubling up to 4 s, and given
  up after 32 s (the only state: NOTIFYs in flight).
* Responses to its NOTIFYs end those retransmissions; any other request gets
  a 200 without a body.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import socket
import sys
import time

import uvloop

LOOPBACK = "127.0.0.1"
T1, T2, GIVE_UP = 0.5, 4.0, 32.0


def _header_lines(head: bytes) -> list[bytes]:
    return head.split(b"\r\n")


def _value(lines: list[bytes], *names: bytes) -> bytes:
    """First header value with one of ``names`` (lower-case, long or compact form)."""
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in names:
            return value.strip()
    return b""


class Stub(asyncio.DatagramProtocol):
    def __init__(self, port: int, max_expires: int) -> None:
        self.port = port
        self.max_expires = max_expires
        self.transport: asyncio.DatagramTransport | None = None
        self.cseq = 0
        self.branch = 0
        self.pending: dict[bytes, list[object]] = {}  # branch -> [data, addr, next, interval, t0]
        self.counts = {
            "subscribe_initial": 0,
            "subscribe_refresh": 0,
            "subscribe_unsubscribe": 0,
            "notify_sent": 0,
            "notify_retransmitted": 0,
            "notify_given_up": 0,
            "notify_answered": 0,
            "other_requests": 0,
            "bad": 0,
        }
        self.contact = f"<sip:presence-stub@{LOOPBACK}:{port}>".encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._received(data, addr)
        except (ValueError, IndexError):
            self.counts["bad"] += 1

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = data.split(b"\r\n\r\n", 1)[0]
        lines = _header_lines(head)
        if lines[0].startswith(b"SIP/2.0 "):
            via = _value(lines, b"via", b"v")
            at = via.find(b"branch=")
            branch = via[at + 7 :].split(b";", 1)[0] if at >= 0 else b""
            if self.pending.pop(branch, None) is not None:
                self.counts["notify_answered"] += 1
            return
        method = lines[0].split(b" ", 1)[0]
        vias = [
            line for line in lines[1:] if line[:4].lower() == b"via:" or line[:2].lower() == b"v:"
        ]
        from_ = _value(lines, b"from", b"f")
        to = _value(lines, b"to", b"t")
        call_id = _value(lines, b"call-id", b"i")
        cseq = _value(lines, b"cseq")
        if method != b"SUBSCRIBE":
            self.counts["other_requests"] += 1
            self._send(self._response(vias, from_, to, call_id, cseq, extra=b""), addr)
            return
        asked = _value(lines, b"expires")
        expires = min(int(asked), self.max_expires) if asked else self.max_expires
        if b";tag=" in to:
            self.counts["subscribe_refresh" if expires else "subscribe_unsubscribe"] += 1
        else:
            tag = hashlib.blake2b(call_id, digest_size=6).hexdigest().encode()
            to = to + b";tag=st" + tag
            self.counts["subscribe_initial"] += 1
        extra = b"Contact: " + self.contact + b"\r\nExpires: " + str(expires).encode() + b"\r\n"
        self._send(self._response(vias, from_, to, call_id, cseq, extra=extra), addr)
        contact = _value(lines, b"contact", b"m")
        target = (
            contact[contact.index(b"<") + 1 : contact.index(b">")] if b"<" in contact else contact
        )
        self._notify(target, from_, to, call_id, expires)

    def _response(
        self,
        vias: list[bytes],
        from_: bytes,
        to: bytes,
        call_id: bytes,
        cseq: bytes,
        *,
        extra: bytes,
    ) -> bytes:
        return b"".join(
            (
                b"SIP/2.0 200 OK\r\n",
                *(v + b"\r\n" for v in vias),
                b"From: ", from_, b"\r\nTo: ", to, b"\r\nCall-ID: ", call_id,
                b"\r\nCSeq: ", cseq, b"\r\n", extra, b"Content-Length: 0\r\n\r\n",
            )
        )  # fmt: skip

    def _notify(self, target: bytes, from_: bytes, to: bytes, call_id: bytes, expires: int) -> None:
        uri = target.split(b";", 1)[0]
        hostport = uri.split(b":", 1)[1].rsplit(b"@", 1)[-1]  # after "sip:" and any user
        host, _, port = hostport.rpartition(b":")
        addr = (host.decode() or LOOPBACK, int(port or b"5060"))
        self.cseq += 1
        self.branch += 1
        branch = b"z9hG4bKstub" + str(self.branch).encode()
        entity = to.split(b";tag=")[0].strip(b"<>").split(b">")[0].lstrip(b"<")
        if expires:
            state = b"active;expires=" + str(expires).encode()
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
                b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="' + entity + b'">\r\n'
                b'<tuple id="stub"><status><basic>open</basic></status></tuple>\r\n'
                b"</presence>\r\n"
            )
            ctype = b"Content-Type: application/pidf+xml\r\n"
        else:
            state, body, ctype = b"terminated;reason=timeout", b"", b""
        data = b"".join(
            (
                b"NOTIFY ", uri, b" SIP/2.0\r\n",
                b"Via: SIP/2.0/UDP ", LOOPBACK.encode(), b":", str(self.port).encode(),
                b";branch=", branch, b"\r\nMax-Forwards: 70\r\n",
                b"From: ", to, b"\r\nTo: ", from_, b"\r\nCall-ID: ", call_id,
                b"\r\nCSeq: ", str(self.cseq).encode(), b" NOTIFY\r\n",
                b"Contact: ", self.contact, b"\r\nEvent: presence\r\n",
                b"Subscription-State: ", state, b"\r\n", ctype,
                b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body,
            )
        )  # fmt: skip
        now = time.monotonic()
        self.pending[branch] = [data, addr, now + T1, T1, now]
        self.counts["notify_sent"] += 1
        self._send(data, addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def retransmit(self) -> None:
        now = time.monotonic()
        for branch, entry in list(self.pending.items()):
            data, addr, due, interval, t0 = entry
            assert isinstance(due, float) and isinstance(interval, float)
            assert isinstance(t0, float) and isinstance(data, bytes) and isinstance(addr, tuple)
            if due > now:
                continue
            if now - t0 > GIVE_UP:
                del self.pending[branch]
                self.counts["notify_given_up"] += 1
                continue
            interval = min(interval * 2, T2)
            entry[2], entry[3] = now + interval, interval
            self.counts["notify_retransmitted"] += 1
            self._send(data, addr)


async def serve(port: int, max_expires: int) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    sock.bind((LOOPBACK, port))
    stub = Stub(sock.getsockname()[1], max_expires)
    transport, _ = await loop.create_datagram_endpoint(lambda: stub, sock=sock)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {stub.port}", flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            stub.retransmit()
    transport.close()
    return {**stub.counts, "pending": len(stub.pending)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--port", type=int, default=0, help="UDP port on 127.0.0.1 (0: any)")
    ap.add_argument("--expires", type=int, default=3600, help="longest Expires granted")
    args = ap.parse_args()
    counts = uvloop.run(serve(args.port, args.expires))
    print(json.dumps(counts), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
