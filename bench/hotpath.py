"""The NOTIFY hot path of one shard engine, in process: no sockets, a fake clock.

Run: ``.venv/bin/python bench/hotpath.py [--subs N] [--repeat R] [--mem-subs M]
[--quick] [--profile]``.

A fake presence server lives in this process. It answers every SUBSCRIBE the
engine sends with a 200 and a NOTIFY (like tests/integration/scenarios/
uas_load_notify.xml does), so N dialogs are established through the real
``Engine.datagram_received``; then it sends rounds of in-dialog NOTIFYs, one per
subscription per round, with the same headers and PIDF bodies SIPp sends (entity
per record, basic alternating, a note per round). Only engine calls are timed;
the datagrams are built before each round. Times are CPU seconds of this process
(``time.process_time``), so a busy neighbour on a shared machine does not count.

Figures (medians over ``--repeat`` measurements of ``--rounds`` rounds each):

  notify_per_s        NOTIFYs per second of one core, including the work of any
                      timer they leave behind: after the rounds the clock moves
                      past the engine's rest_after (past Timer K) and
                      what runs then is timed and added: putting the
                      dialogs the NOTIFYs woke back to rest.
                      Like the shard's driver, the loop takes the engine's
                      output (and deadline) after every input.
  us_per_notify       the same as microseconds per NOTIFY.
  setup_per_s         subscriptions established per second of engine time
                      (subscribe -> SUBSCRIBE, 200 -> dialog, NOTIFY -> 200 + Status).
  bytes_per_sub_*     at ``--mem-subs`` (default 100 000) subscriptions established
                      and idle (every transaction ended, every one at rest), each in a fresh child
                      process: live Python objects per subscription from tracemalloc,
                      and the RSS growth per subscription from psutil.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.presence.status import Failure
from presence_b2b.shard.engine import Engine, LocalEndpoint
from presence_b2b.shard.engine_metrics import MetricsObserver

from presence_b2b import compiled
from presence_b2b.config import B2BParams, SipSettings

LOCAL = LocalEndpoint("127.0.0.1", 5070)
PEER = ("127.0.0.1", 5090)
PEER_HOSTPORT = f"{PEER[0]}:{PEER[1]}"
EXPIRES = 3600
STEP = 50e-6  # fake seconds between two datagrams (20 000/s)


class Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _head(data: bytes) -> dict[str, str]:
    """The fake peer's reading of a SUBSCRIBE the engine sent (first value per name)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    out: dict[str, str] = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        out.setdefault(name.strip(), value.strip())
    return out


def _pidf(entity: str, basic: str, note: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">\r\n'
        '<tuple id="sipp-uas">\r\n'
        f"<status><basic>{basic}</basic></status>\r\n"
        f"<contact>sip:presence-uas@{PEER_HOSTPORT}</contact>\r\n"
        "</tuple>\r\n"
        f"<note>{note}</note>\r\n"
        "</presence>\r\n"
    ).encode()


class Peer:
    """Per established dialog, what the server needs to send it NOTIFYs."""

    def __init__(self, keep: bool, shared_entity: str | None = None) -> None:
        self.keep = keep
        self.shared_entity = shared_entity
        self.dialogs: list[tuple[str, str, str, str]] = []  # (call-id, from, to, entity)
        self.cseq: list[int] = []
        self.branch = 0

    def answer(self, subscribe: bytes, i: int) -> tuple[bytes, bytes]:
        """The 200 and the first NOTIFY for one initial SUBSCRIBE."""
        h = _head(subscribe)
        to = h["To"]
        entity = to.strip("<>")
        tag = f"srv{i}"
        ok = (
            "SIP/2.0 200 OK\r\n"
            f"Via: {h['Via']}\r\n"
            f"From: {h['From']}\r\n"
            f"To: {to};tag={tag}\r\n"
            f"Call-ID: {h['Call-ID']}\r\n"
            f"CSeq: {h['CSeq']}\r\n"
            f"Contact: <sip:presence-uas@{PEER_HOSTPORT}>\r\n"
            f"Expires: {EXPIRES}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        dialog = (h["Call-ID"], f"{to};tag={tag}", h["From"], self.shared_entity or entity)
        if self.keep:
            self.dialogs.append(dialog)
            self.cseq.append(1)
        return ok, self._notify(dialog, 1, "open", "load")

    def _notify(self, d: tuple[str, str, str, str], cseq: int, basic: str, note: str) -> bytes:
        self.branch += 1
        call_id, from_, to, entity = d
        body = _pidf(entity, basic, note)
        return (
            f"NOTIFY sip:{LOCAL.hostport} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {PEER_HOSTPORT};branch=z9hG4bK-{self.branch}-{cseq}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {from_}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} NOTIFY\r\n"
            f"Contact: <sip:presence-uas@{PEER_HOSTPORT}>\r\n"
            "Event: presence\r\n"
            f"Subscription-State: active;expires={EXPIRES}\r\n"
            "Content-Type: application/pidf+xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def round(self, k: int) -> list[bytes]:
        """One in-dialog NOTIFY per dialog, as SIPp's k-th NOTIFY after a refresh."""
        out = []
        for i, d in enumerate(self.dialogs):
            self.cseq[i] += 1
            basic = "closed" if self.cseq[i] % 2 == 0 else "open"
            out.append(self._notify(d, self.cseq[i], basic, f"update {k}"))
        return out


class Harness:
    def __init__(self, keep: bool, shared_entity: str | None = None) -> None:
        self.clock = Clock()
        self.out: list[bytes] = []
        self.statuses = 0
        self.failures = 0
        self.engine = Engine(
            B2BParams(default_expiration=EXPIRES, wait_for_term_notify=5),
            SipSettings(),
            LOCAL,
            clock=self.clock,
            observer=MetricsObserver(ShardMetrics(MetricsBlock.create("hotpath"))),
        )
        self.peer = Peer(keep, shared_entity)
        self.next_id = 0

    def take(self) -> float | None:
        """What the shard's driver does after each input: take the output (the
        datagrams are kept for the peer, the messages counted); the deadline."""
        out = self.engine.take()
        for data, _, _ in out.datagrams:
            self.out.append(data)
        for msg in out.messages:
            if isinstance(msg, Failure):
                self.failures += 1
            else:
                self.statuses += 1
        return out.deadline

    def feed(self, data: bytes) -> None:
        """One datagram in, then what the shard's driver does after each one."""
        engine = self.engine
        self.clock.now += STEP
        engine.datagram_received(data, PEER)
        deadline = self.take()
        if deadline is not None and deadline <= self.clock.now:
            engine.on_timer()
            self.take()

    def establish(self, n: int, timed: list[float] | None = None) -> None:
        """n more subscriptions through subscribe, 200 and a first NOTIFY."""
        engine = self.engine
        perf = time.process_time
        spent = 0.0
        for _ in range(n):
            i = self.next_id
            self.next_id += 1
            self.out.clear()
            t0 = perf()
            engine.subscribe(i, f"sip:rec{i}@{PEER_HOSTPORT}", f"sip:sub{i}@example.com")
            self.take()
            spent += perf() - t0
            [subscribe] = self.out
            ok, notify = self.peer.answer(subscribe, i)
            t0 = perf()
            self.feed(ok)
            self.feed(notify)
            spent += perf() - t0
        self.out.clear()
        if timed is not None:
            timed.append(spent)

    def idle(self) -> float:
        """Move the clock past the engine's ``rest_after`` (past Timer K: every
        answered transaction has ended), and let each quiet subscription rest
        (a batch per timer turn, as in the shard); seconds spent."""
        t0 = time.process_time()
        engine = self.engine
        self.clock.now += engine.rest_after + 2.0
        while True:
            engine.on_timer()
            deadline = self.take()
            if deadline is None or deadline > self.clock.now:
                break
        self.out.clear()
        return time.process_time() - t0


def notify_rounds(h: Harness, rounds: int, first_round: int) -> tuple[float, float, int]:
    """(seconds in NOTIFY handling, seconds in the timers they left, NOTIFYs)."""
    spent = 0.0
    count = 0
    feed = h.feed
    perf = time.process_time
    for k in range(first_round, first_round + rounds):
        batch = h.peer.round(k)
        t0 = perf()
        for data in batch:
            feed(data)
        spent += perf() - t0
        count += len(batch)
        h.out.clear()
    return spent, h.idle(), count


def throughput(
    n: int, repeat: int, rounds: int, profile: bool, shared: bool = False
) -> dict[str, float]:
    h = Harness(keep=True, shared_entity=f"sip:shared@{PEER_HOSTPORT}" if shared else None)
    setup: list[float] = []
    for _ in range(5):
        h.establish(n // 5, setup)
    h.idle()
    per_notify: list[float] = []
    per_notify_no_expiry: list[float] = []
    k = 1
    prof = cProfile.Profile() if profile else None
    for rep in range(repeat):
        if prof is not None and rep == repeat - 1:
            prof.enable()
        spent, expiry, count = notify_rounds(h, rounds, k)
        if prof is not None and rep == repeat - 1:
            prof.disable()
        k += rounds
        per_notify.append((spent + expiry) / count)
        per_notify_no_expiry.append(spent / count)
        print(
            f"  rep {rep + 1}: {count} NOTIFYs {spent / count * 1e6:6.1f} us each"
            f" + expiry {expiry / count * 1e6:5.1f} us -> {count / (spent + expiry):8.0f}/s",
            file=sys.stderr,
        )
    if prof is not None:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue(), file=sys.stderr)
    expected = n + repeat * rounds * n
    if h.statuses != expected or h.failures:
        print(
            f"  WARNING: {h.statuses}/{expected} statuses, {h.failures} failures",
            file=sys.stderr,
        )
    us = statistics.median(per_notify) * 1e6
    return {
        "notify_per_s": 1e6 / us,
        "us_per_notify": us,
        "us_per_notify_no_expiry": statistics.median(per_notify_no_expiry) * 1e6,
        "setup_per_s": n / sum(setup),
    }


def memory(n: int, mode: str) -> float:
    """Bytes per idle subscription, in this (fresh) process: tracemalloc or RSS."""
    h = Harness(keep=False)
    h.establish(200)  # warm every cache and pool before the baseline
    h.idle()
    gc.collect()
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    else:
        import psutil

        proc = psutil.Process()
        base = proc.memory_info().rss
    for _ in range(n // 1000):
        h.establish(1000)
    h.establish(n % 1000)
    h.idle()
    gc.collect()
    if len(h.engine) != n + 200 or len(h.engine.table) or h.failures:
        print(f"  WARNING: {len(h.engine)} subs, {len(h.engine.table)} txns", file=sys.stderr)
    if mode == "tracemalloc":
        used = tracemalloc.get_traced_memory()[0] - base
    else:
        used = proc.memory_info().rss - base
    return used / n


def _child_memory(n: int, mode: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--mem-child", mode, "--mem-subs", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--subs", type=int, default=10_000, help="dialogs for the NOTIFY rate")
    ap.add_argument("--rounds", type=int, default=5, help="NOTIFYs per dialog per measurement")
    ap.add_argument("--repeat", type=int, default=5, help="measurements (median reported)")
    ap.add_argument("--mem-subs", type=int, default=100_000, help="dialogs for the memory figures")
    ap.add_argument("--no-mem", action="store_true", help="skip the memory figures")
    ap.add_argument(
        "--quick", action="store_true", help="2000 dialogs, 3 measurements, 10 000 for memory"
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the last measurement")
    ap.add_argument(
        "--shared-body",
        action="store_true",
        help="one presentity for every dialog, so a round's bodies repeat (best case)",
    )
    ap.add_argument("--mem-child", choices=("tracemalloc", "rss"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        print(memory(args.mem_subs, args.mem_child))
        return
    if args.quick:
        args.subs, args.repeat, args.mem_subs = 2000, 3, 10_000

    print(f"hot path: {args.subs} dialogs, {args.rounds} NOTIFYs each, {args.repeat} measurements")
    result = throughput(args.subs, args.repeat, args.rounds, args.profile, args.shared_body)
    tm = rss = 0.0
    if not args.no_mem:
        tm = _child_memory(args.mem_subs, "tracemalloc")
        rss = _child_memory(args.mem_subs, "rss")
    print(
        f"NOTIFY: {result['notify_per_s']:.0f}/s, {result['us_per_notify']:.1f} us each "
        f"({result['us_per_notify_no_expiry']:.1f} us without the timers it left)"
    )
    print(f"set-up: {result['setup_per_s']:.0f} subscriptions/s of engine time")
    if not args.no_mem:
        print(
            f"idle subscription at {args.mem_subs}: {tm:.0f} bytes of live objects "
            f"(tracemalloc), {rss:.0f} bytes RSS"
        )
    summary: dict[str, float | int] = {
        "notify_per_s": round(result["notify_per_s"], 1),
        "us_per_notify": round(result["us_per_notify"], 2),
        "bytes_per_sub_tracemalloc": round(tm, 1),
        "rss_bytes_per_sub": round(rss, 1),
        "us_per_notify_no_expiry": round(result["us_per_notify_no_expiry"], 2),
        "setup_per_s": round(result["setup_per_s"], 1),
        "subs": args.subs,
        "mem_subs": args.mem_subs,
    }
    print(json.dumps({"compiled": compiled.is_compiled(), **summary}))


if __name__ == "__main__":
    main()
