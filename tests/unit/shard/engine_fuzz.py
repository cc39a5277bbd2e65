"""A seeded mutation fuzzer for the engine: what a hostile or broken peer can send.

A presence server that answers with mutated 200s, 302s and errors, mutated
NOTIFYs and OPTIONS, while the consumer subscribes, refreshes and unsubscribes
and the clock jumps. After every input it checks what the issue found broken:
no exception leaves the engine, every consumer message can be encoded for the
ring, and every live subscription has a timer, an outstanding transaction (or
a held send) or is over. ``bench/fuzz_engine.py`` runs it for longer.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field

from engine_harness import RECORD, Harness, probe, response_to
from presence_b2b.ipc.messages import encode
from presence_b2b.shard.transport import unusable
from presence_b2b.shard.usage import RestingUsage
from presence_b2b.sip.message import Request, Response

_SUBS = 4
_ODD_TEXT = ("\udcff\udcfe", "caf\udce9", "x" * 300, "", " ", ";;;", "\t")
_ODD_URIS = (
    "<sip:host.example.com:5090>",
    "<sip:[::1]:5090>",
    "<sip:127.0.0.1:99999>",
    "<tel:+1234>",
    "<sip:>",
    "<sip:a@[zz::1]>",
    "garbage",
    "<sip:127.0.0.1:5090;maddr=name.example>",
    "<sip:a@127.0.0.1:5090?x=y>",
)
_HEADERS = (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Record-Route", "Event",
    "Subscription-State", "Content-Type", "Expires", "Min-Expires", "Retry-After",
    "Require", "Content-Length",
)


@dataclass
class FuzzStats:
    steps: int = 0
    datagrams: int = 0
    messages: int = 0
    internal: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def _mutate_message(rng: random.Random, msg: Request | Response) -> None:
    """One structured change: a header gets odd text, an odd URI, a bad number,
    goes missing or is doubled."""
    name = rng.choice(_HEADERS)
    what = rng.randrange(6)
    if what == 0:
        msg.headers = [(n, v) for n, v in msg.headers if n != name]
    elif what == 1:
        msg.headers.append((name, rng.choice(_ODD_URIS)))
    elif what == 2:
        msg.headers = [(n, v + rng.choice(_ODD_TEXT) if n == name else v) for n, v in msg.headers]
    elif what == 3:
        msg.headers = [
            (n, str(rng.choice((-1, 0, 1, 2**40, 7))) + " NOTIFY" if n == name else v)
            for n, v in msg.headers
        ]
    elif what == 4 and isinstance(msg, Response):
        msg.reason = rng.choice(_ODD_TEXT)
    else:
        msg.headers.append((name, rng.choice(_ODD_TEXT) or "x"))


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Raw damage: flipped, inserted, cut or non-UTF-8 bytes."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        at = rng.randrange(len(b))
        what = rng.randrange(4)
        if what == 0:
            b[at] = rng.randrange(256)
        elif what == 1:
            b[at:at] = bytes([0xFF, 0xC3, 0x28])
        elif what == 2:
            del b[at:]
        else:
            b[at:at] = b"\r\n"
    return bytes(b)


def _send(rng: random.Random, h: Harness, msg: Request | Response) -> None:
    if rng.random() < 0.6:
        _mutate_message(rng, msg)
        if rng.random() < 0.3:
            _mutate_message(rng, msg)
    data = msg.to_bytes()
    if rng.random() < 0.25:
        data = _mutate_bytes(rng, data)
    h.datagram(data)


def check(h: Harness) -> None:
    """Every live subscription can make progress; every message can be encoded."""
    for msg in h.delivered:
        encode(msg)
    h.delivered.clear()
    engine = h.engine
    waiting = {
        (txn.context.usage.sub_id, txn.context.txn_no)
        for txn in engine.table.clients()
        if txn.state.value in ("trying", "proceeding")
    }
    for usage in engine:
        if isinstance(usage, RestingUsage):
            if usage.timer_seq == 0:
                raise AssertionError(f"subscription {usage.sub_id} rests with no timer")
            continue
        if usage.finished:
            raise AssertionError(f"finished subscription {usage.sub_id} still in the engine")
        armed = usage.deadline is not None and usage.timer_seq != 0
        sent = usage.outstanding and (
            (usage.sub_id, usage.txn) in waiting or engine.hold is not None
        )
        if not (armed or sent):
            raise AssertionError(f"subscription stuck: {usage.snapshot()}")


def run(seed: int, steps: int) -> FuzzStats:
    """``steps`` random inputs from a seeded generator; raises on the first breach."""
    rng = random.Random(seed)
    h = Harness(subscribe_rate=rng.choice((0.0, 0.0, 5.0)))
    h.refuse = lambda dest: unusable(dest, socket.AF_INET) if rng.random() < 0.98 else "EPERM"
    stats = FuzzStats()
    for sub_id in range(_SUBS):
        h.subscribe(sub_id, RECORD)
    for _ in range(steps):
        stats.steps += 1
        before = len(h.sent)
        subscribes = h.requests()
        what = rng.randrange(10)
        if what <= 3 and subscribes:
            req = rng.choice(subscribes[-6:])
            code = rng.choice((200, 200, 202, 302, 305, 423, 481, 489, 500, 503, 180))
            headers: list[tuple[str, str]] = [("Expires", str(rng.choice((0, 1, 60, 3600))))]
            if code == 302:
                headers += [("Contact", u) for u in rng.sample(_ODD_URIS, 2)]
                headers.append(("Contact", "<sip:bob@127.0.0.1:5090>;q=0.5"))
            elif code == 423:
                headers.append(("Min-Expires", "120"))
            else:
                headers.append(("Contact", rng.choice(("<sip:127.0.0.1:5090>", *_ODD_URIS))))
            if rng.random() < 0.3:
                headers.append(("Record-Route", rng.choice(_ODD_URIS)))
            _send(rng, h, response_to(req, code, *headers, tag=f"srv{rng.randrange(2)}"))
        elif what <= 6 and subscribes:
            req = rng.choice(subscribes[-6:])
            state = rng.choice((
                "active;expires=600", "pending", "terminated;reason=timeout",
                "terminated;reason=rejected", "terminated;retry-after=5", "active",
            ))
            body = b"<presence/>" if rng.random() < 0.3 else b""
            n = h.notify_request(req, state, body, tag=rng.choice(("srv0", "srv1")))
            if rng.random() < 0.2:
                n.set("CSeq", f"{rng.randrange(5)} NOTIFY")
            _send(rng, h, n)
        elif what == 7:
            _send(rng, h, probe(via_params=";rport"))
        elif what == 8:
            sub_id = rng.randrange(_SUBS + 1)
            action = rng.randrange(3)
            if action == 0:
                h.unsubscribe(sub_id)
            elif action == 1:
                h.refresh(sub_id)
            elif sub_id not in h.engine.usages:
                h.subscribe(sub_id, RECORD)
        else:
            h.advance(rng.choice((0.1, 0.5, 2.0, 31.0, 200.0)))
        stats.datagrams += len(h.sent) - before
        stats.messages += len(h.delivered)
        for msg in h.delivered:
            kind = getattr(msg, "kind", None)
            if kind is not None:
                stats.kinds[str(kind)] = stats.kinds.get(str(kind), 0) + 1
        check(h)
    stats.internal = h.obs.counts["error", "internal"]
    return stats

