"""Seeded mutation fuzzers for what strangers can hand the service: SIP datagrams
(the parser, and the engine behind it), PIDF and other NOTIFY bodies (with
namespace-heavy seeds), the QSA wire messages and a status ring a client
scribbles on.

Each target takes bytes made by mutating a few valid seeds and checks one
contract: only the documented error comes out (SipParseError, ProtocolError,
RingError), a body never yields more output than the bounds allow, nothing
hangs; and the plain PIDF reader reads every document it accepts as expat
does. ``run(target, seed, count)`` is deterministic for a seed; the unit tests
run short seeded runs, ``bench/fuzz.py`` long ones.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from presence_b2b.ipc.messages import (
    ProtocolError,
    Subscribe,
    Unsubscribe,
    decode_control,
    decode_request,
    decode_status,
    encode,
)
from presence_b2b.ipc.ring import DATA_OFFSET, Ring, RingError
from presence_b2b.presence.body import decode, decode_body
from presence_b2b.presence.pidf import PidfError, parse_pidf
from presence_b2b.presence.pidf_plain import read_plain
from presence_b2b.presence.status import Status, SubscriptionState
from presence_b2b.presence.xmlsafe import MAX_DEPTH, MAX_ELEMENTS
from presence_b2b.shard.engine import Engine, LocalEndpoint
from presence_b2b.sip.message import SipParseError, parse_message

from presence_b2b.config import B2BParams, SipSettings

__all__ = ["TARGETS", "FuzzStats", "mutate", "run"]

PIDF_NS = "urn:ietf:params:xml:ns:pidf"

SIP_SEEDS: tuple[bytes, ...] = (
    b"NOTIFY sip:127.0.0.1:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK1\r\n"
    b"From: <sip:alice@x>;tag=a\r\nTo: <sip:bob@y>;tag=b\r\nCall-ID: c1@x\r\n"
    b"CSeq: 2 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=600\r\n"
    b"Contact: <sip:127.0.0.1:5090>\r\nContent-Type: application/pidf+xml\r\n"
    b"Content-Length: 96\r\n\r\n"
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@x"><tuple id="t">'
    b"</tuple></presence>",
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx;rport\r\n"
    b"f: <sip:bob@y>;tag=b\r\nt: <sip:alice@x>;tag=a\r\ni: c1@x\r\nCSeq: 1 SUBSCRIBE\r\n"
    b"m: <sip:127.0.0.1:5090>\r\nExpires: 600\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\n"
    b"l: 0\r\n\r\n",
    b"OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/TCP h:5;branch=z9hG4bKo\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:p@x>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o\r\n"
    b"CSeq: 9 OPTIONS\r\nRequire: eventlist, foo\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\n"
    b"From: <sip:b@y>;tag=b\r\nTo: <sip:a@x>;tag=s\r\nCall-ID: c2\r\nCSeq: 1 SUBSCRIBE\r\n"
    b'WWW-Authenticate: Digest realm="r", nonce="n", qop="auth,auth-int", algorithm=SHA-256\r\n'
    b"Content-Length: 0\r\n\r\n",
)

_MANY_PREFIXES = "".join(f' xmlns:p{i}="urn:x:{i}"' for i in range(40))
BODY_SEEDS: tuple[tuple[str, bytes], ...] = (
    ("application/pidf+xml", (
        f'<?xml version="1.0"?><presence xmlns="{PIDF_NS}" entity="sip:a@x">'
        '<tuple id="t1"><status><basic>open</basic></status><note xml:lang="en">hi</note>'
        "</tuple></presence>"
    ).encode()),
    ("application/pidf+xml", (
        f'<presence xmlns="{PIDF_NS}"{_MANY_PREFIXES} entity="sip:a@x"><tuple id="t">'
        + "".join(f"<p{i}:e{i} p{i}:a='v'><p{(i + 1) % 40}:x/></p{i}:e{i}>" for i in range(40))
        + "<status><basic>closed</basic></status></tuple></presence>"
    ).encode()),
    ("application/pidf+xml", (
        f'<presence xmlns="{PIDF_NS}" xmlns:d="urn:ietf:params:xml:ns:pidf:data-model"'
        ' xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@x">'
        '<d:person id="p"><r:activities><r:away/></r:activities></d:person>'
        + "".join(f'<ext{i} xmlns="urn:deep:{i}">' for i in range(30))
        + "".join(f"</ext{i}>" for i in reversed(range(30)))
        + "</presence>"
    ).encode()),
    ("application/dialog-info+xml",
     b'<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" '
     b'version="1" state="full" entity="sip:a@x"><dialog id="d1"><state>confirmed</state>'
     b"</dialog></dialog-info>"),
    ("application/simple-message-summary",
     b"Messages-Waiting: yes\r\nMessage-Account: sip:a@x\r\nVoice-Message: 2/8 (0/2)\r\n"),
)

WIRE_SEEDS: tuple[bytes, ...] = (
    encode(Subscribe(id=7, record="sip:a@x", subscriber="sip:b@y", package="presence")),
    encode(Unsubscribe(id=7)),
    encode(Status(3, SubscriptionState.ACTIVE, "", body=b"<x/>", content_type="t/x")),
)

_INTERESTING = (b"\x00", b"\xff", b"\r\n", b"\r\n\r\n", b":", b";", b"<", b">", b"%",
                b"\xc3\x28", b"&#0;", b"<!--", b"]]>", b'"', b"'", b"9" * 20, b"-1",
                b"xmlns:a=", b"xmlns=''")


def mutate(rng: random.Random, data: bytes, others: tuple[bytes, ...]) -> bytes:
    """One to four byte-level mutations: flip, insert, delete, repeat a chunk,
    splice another seed in, or drop in an interesting token."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3 and buf:
            chunk = buf[pos : pos + rng.randint(1, 64)]
            buf[pos:pos] = chunk * rng.randint(1, 32)
        elif op == 4:
            other = rng.choice(others)
            at = rng.randrange(len(other) + 1)
            buf[pos:] = other[at:]
        else:
            buf[pos:pos] = rng.choice(_INTERESTING)
    return bytes(buf)


@dataclass
class FuzzStats:
    target: str
    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


#: A target takes (rng, stats) and runs one input; it appends to stats.failures
#: what broke a contract.
Target = Callable[[random.Random, FuzzStats], None]


def _sip(rng: random.Random, stats: FuzzStats) -> None:
    data = mutate(rng, rng.choice(SIP_SEEDS), SIP_SEEDS)
    try:
        parse_message(data, max_size=65535)
    except SipParseError:
        stats.rejected += 1
        return
    except Exception as exc:  # a contract breach: say which input
        stats.failures.append(f"sip: {type(exc).__name__}: {exc} on {data[:120]!r}")
        return
    stats.accepted += 1


#: At most this many bytes of encoded status per byte of body, plus a floor: the
#: body itself, its parsed form and the re-serialised extensions together.
_STATUS_PER_BODY_BYTE = 8
_STATUS_FLOOR = 64 * 1024


def _body(rng: random.Random, stats: FuzzStats) -> None:
    content_type, seed = rng.choice(BODY_SEEDS)
    body = mutate(rng, seed, tuple(b for _, b in BODY_SEEDS))
    try:
        if content_type == "application/pidf+xml":
            presentity, error = decode_body(content_type, body)
            document = None
        else:
            package = "dialog" if "dialog" in content_type else "message-summary"
            decoded = decode(package, content_type, body)
            presentity, document, error = decoded.presentity, decoded.document, decoded.error
        size = len(encode(Status(
            1, SubscriptionState.ACTIVE, "", presentity=presentity, body=body,
            content_type=content_type, error=error, document=document,
        )))
    except Exception as exc:
        stats.failures.append(f"body: {type(exc).__name__}: {exc} on {body[:120]!r}")
        return
    if size > _STATUS_FLOOR + _STATUS_PER_BODY_BYTE * len(body):
        stats.failures.append(f"body: {len(body)} bytes became a {size}-byte status")
        return
    if error:
        stats.rejected += 1
    else:
        stats.accepted += 1


PLAIN_SEEDS: tuple[bytes, ...] = (
    (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        f'<presence xmlns="{PIDF_NS}" entity="sip:alice@example.com">\r\n'
        '<tuple id="sipp-uas">\r\n<status><basic>open</basic></status>\r\n'
        '<contact priority="0.5">sip:uas@127.0.0.1:5090</contact>\r\n</tuple>\r\n'
        "<note>update 7</note>\r\n</presence>\r\n"
    ).encode(),
    (
        f"<presence xmlns='{PIDF_NS}' entity='sip:bob@example.com'>"
        f"<tuple xmlns='{PIDF_NS}' id='0x1'><status xmlns='{PIDF_NS}'>"
        f"<basic xmlns='{PIDF_NS}'>closed</basic></status>"
        f"<note xml:lang='en'>away</note><timestamp>2026-12-04T10:00:00Z</timestamp>"
        "</tuple></presence>"
    ).encode(),
    BODY_SEEDS[0][1],
)


def _pidf_plain(rng: random.Random, stats: FuzzStats) -> None:
    body = mutate(rng, rng.choice(PLAIN_SEEDS), PLAIN_SEEDS)
    try:
        plain = read_plain(body, MAX_DEPTH, MAX_ELEMENTS)
        if plain is None:
            stats.rejected += 1
            return
        try:
            by_expat: object = parse_pidf(body, plain=False)
        except PidfError as e:
            by_expat = f"refused ({e.kind})"
    except Exception as exc:
        stats.failures.append(f"pidf-plain: {type(exc).__name__}: {exc} on {body[:120]!r}")
        return
    if plain != by_expat:
        stats.failures.append(f"pidf-plain: read {plain!r}, expat {by_expat!r}, on {body!r}")
        return
    stats.accepted += 1


_DECODERS = (decode_request, decode_status, decode_control)


def _wire(rng: random.Random, stats: FuzzStats) -> None:
    data = mutate(rng, rng.choice(WIRE_SEEDS), WIRE_SEEDS)
    for decoder in _DECODERS:
        try:
            decoder(data)
        except ProtocolError:
            stats.rejected += 1
            continue
        except Exception as exc:
            stats.failures.append(f"wire {decoder.__name__}: {type(exc).__name__}: {exc}")
            return
        stats.accepted += 1


_RING_CAPACITY = 4096


def _ring(rng: random.Random, stats: FuzzStats) -> None:
    """A client writes records, then scribbles over the ring: the shard's reader
    either reads, skips and counts bad records, or says the ring is broken."""
    ring = Ring.create(_RING_CAPACITY)
    try:
        writer, reader = ring.writer(), ring.reader()
        for _ in range(rng.randint(0, 12)):
            writer.try_write(mutate(rng, rng.choice(WIRE_SEEDS), WIRE_SEEDS)[:200])
        fd = ring.fds()[0]
        for _ in range(rng.randint(1, 6)):
            # Anywhere in the mapping, header included; never past its end (the
            # memfd is sealed against growing).
            scribble = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            os.pwrite(fd, scribble, rng.randrange(DATA_OFFSET + _RING_CAPACITY - len(scribble)))
        for _ in range(64):  # a bounded number of reads: never a hang
            try:
                batch = reader.read_batch()
            except RingError:
                stats.rejected += 1
                return
            if not batch:
                break
        stats.accepted += 1
    except RingError:
        stats.rejected += 1
    except Exception as exc:
        stats.failures.append(f"ring: {type(exc).__name__}: {exc}")
    finally:
        ring.close()


class _EngineTarget:
    """Mutated datagrams into a live engine with subscriptions under way: the
    engine answers or drops each one, nothing escapes it, and what it keeps
    for unknown sources stays bounded (server transactions only for NOTIFYs
    of its own dialogs)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.engine = Engine(
            B2BParams(), SipSettings(), LocalEndpoint("127.0.0.1", 5070), clock=lambda: self.now
        )
        for sub_id in range(1, 5):
            self.engine.subscribe(sub_id, f"sip:r{sub_id}@127.0.0.1:5090", "sip:w@example.com")
        self.engine.take()
        self.count = 0

    def __call__(self, rng: random.Random, stats: FuzzStats) -> None:
        data = mutate(rng, rng.choice(SIP_SEEDS), SIP_SEEDS)
        try:
            self.engine.datagram_received(data, ("127.0.0.1", 5090))
            out = self.engine.take()
            for msg in out.messages:
                encode(msg)
            self.count += 1
            if self.count % 1000 == 0:  # time goes by: transactions end, timers fire
                self.now += 1.0
                self.engine.on_timer()
                self.engine.take()
        except Exception as exc:
            stats.failures.append(f"engine: {type(exc).__name__}: {exc} on {data[:120]!r}")
            return
        stats.accepted += 1


TARGETS: dict[str, Callable[[], Target]] = {
    "sip": lambda: _sip,
    "body": lambda: _body,
    "pidf-plain": lambda: _pidf_plain,
    "wire": lambda: _wire,
    "ring": lambda: _ring,
    "engine": _EngineTarget,
}


def run(target: str, seed: int, count: int, *, stop_after: int = 10) -> FuzzStats:
    """``count`` inputs for ``target`` from ``seed``; stops after ``stop_after``
    failures (their texts are in the result)."""
    rng = random.Random(seed)
    step = TARGETS[target]()
    stats = FuzzStats(target)
    started = time.perf_counter()
    for _ in range(count):
        stats.inputs += 1
        step(rng, stats)
        if len(stats.failures) >= stop_after:
            break
    stats.seconds = time.perf_counter() - started
    return stats
