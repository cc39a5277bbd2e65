"""Chaos, the long versions of tests/e2e/test_chaos_lossy_link.py and more, with
figures for docs/reliability.md.

Run: ``.venv/bin/python bench/chaos.py [--dialogs N] [--quick] [--only NAME,...]``.

loss       N dialogs set up through tests/peers/lossy_relay.py dropping 5 %,
           20 % and 50 % of datagrams both ways (SIPp's uas_hold behind it):
           time until every subscription is active, failures reported to the
           client, dialogs the server saw per pair (re-sent = extra dialogs),
           datagrams dropped.
gone       the server away for --gone seconds while N subscriptions start
           (on_error_retry_time 10 s, subscribe_rate 200/s), then back: time
           from its return until all are active, new dialogs per second at the
           server against the rate.
shardkill  a stream of --rate NOTIFY/s (2 000) over 1 000 dialogs (SIPp
           uas_stream), the dialog store on; one shard killed with SIGKILL
           mid-stream: statuses the client got against those offered, time
           until the shard is back.
supkill    the same with the supervisor killed (its shards die with it) and the
           service started again: the client reconnects and replays, the
           shards take their dialogs back from the store.
sigterm    10 000 dialogs against bench/stub_uas.py, then SIGTERM: time until
           the service exits, unsubscribes the server counted, against
           wait_for_term_notify.
clientkill a client process with --sigterm-dialogs subscriptions and another
           one with --dialogs, both against bench/stub_uas.py; the first killed
           with SIGKILL: time until the service has forgotten it and until its
           last dialog has ended, unsubscribes the server counted, and what
           the other client lost (failures, subscriptions no longer held).

Human-readable lines, then one JSON object. Never fails on a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.capacity import start_stub, stop_stub
from bench.common import Service, code_version, exit_on_sigterm, print_json
from bench.e2e import UAS, Load, epoch_ms
from tests.peers.lossy_relay import RelayProcess
from tests.peers.sipp import SippProcess

HOLD = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "scenarios" / "uas_hold.xml"
_FAST = {"presence_b2b": {"on_error_retry_time": 10}}


def _hold_uas(calls: int) -> SippProcess:
    return SippProcess(
        HOLD, calls=calls, keys={"expires": 3600, "note": "at lunch"},
        recv_timeout_ms=600_000,
    ).start()


def _dialogs_per_pair(uas: SippProcess) -> Counter[str]:
    first: dict[str, str] = {}
    for msg in uas.received("SUBSCRIBE"):
        if ";tag=" not in msg.header("To"):
            first.setdefault(msg.call_id, msg.header("From").split(">")[0])
    return Counter(first.values())


async def _setup(
    control_socket: str, port: int, n: int, shards: int, patience: float = 180.0
) -> tuple[float, int, int]:
    """Subscribe n pairs at once: (seconds to the last active, how many, failures
    told). Waits up to ``patience`` seconds: under heavy loss a pair may need a
    transaction timeout (32 s) and a retry before it is up."""
    async with Load(control_socket, port, n, shards) as load:
        t0 = time.perf_counter()
        await load.subscribe_all(n)
        deadline = t0 + patience
        while load.setup_done < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.2)
        return load.last_setup - t0, load.setup_done, load.failures


def loss(n: int, shards: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in (0.05, 0.20, 0.50):
        uas = _hold_uas(n * 4)
        relay = RelayProcess(uas.port, drop=rate, seed=int(rate * 100))
        svc = Service(shards=shards, config=_FAST).start()
        try:
            took, done, failures = asyncio.run(_setup(svc.control_socket, relay.port, n, shards))
            counts = relay.stop()
            per_pair = _dialogs_per_pair(uas)
        finally:
            svc.close()
            relay.stop()
            uas.stop(grace=0.1)
            uas.cleanup()
        extra = sum(per_pair.values()) - len(per_pair)
        key = f"loss_{round(rate * 100)}"
        out[key] = {
            "active": done, "offered": n, "seconds": round(took, 1), "failures": failures,
            "extra_dialogs": extra, "dropped": counts.get("dropped", 0),
            "datagrams": counts.get("received", 0),
        }
        print(f"  loss {rate:.0%}: {done}/{n} active in {took:.1f} s, {failures} failures "
              f"told, {extra} extra dialogs, {counts.get('dropped')} of "
              f"{counts.get('received')} datagrams dropped")
    return out


def gone(n: int, shards: int, seconds: float) -> dict[str, Any]:
    rate = 200
    uas = _hold_uas(n * 20)
    relay = RelayProcess(uas.port)
    port = relay.port
    relay.stop()  # gone from the start of the subscriptions
    svc = Service(
        shards=shards, config={**_FAST, "sip": {"subscribe_rate": rate}}
    ).start()
    try:
        async def go() -> tuple[float, int, int]:
            async with Load(svc.control_socket, port, n, shards) as load:
                task = asyncio.get_running_loop().create_task(load.subscribe_all(n))
                await asyncio.sleep(seconds)
                back = RelayProcess(uas.port, port=port)
                returned = time.perf_counter()
                try:
                    await task
                    deadline = time.perf_counter() + 180
                    while load.setup_done < n and time.perf_counter() < deadline:
                        await asyncio.sleep(0.2)
                finally:
                    await asyncio.to_thread(back.stop)
                return load.last_setup - returned, load.setup_done, load.failures

        took, done, failures = asyncio.run(go())
        seen = sorted({m.call_id: m.time for m in uas.received("SUBSCRIBE")
                       if ";tag=" not in m.header("To")}.values())
    finally:
        svc.close()
        uas.stop(grace=0.1)
        uas.cleanup()
    per_second = Counter(int(t.timestamp()) for t in seen)
    peak = max(per_second.values(), default=0)
    print(f"  server gone {seconds:g} s: {done}/{n} active {took:.1f} s after it came back; "
          f"{failures} failures told; peak {peak} new dialogs/s at the server (rate {rate}/s)")
    return {"gone_seconds": seconds, "active": done, "offered": n,
            "recovered_s": round(took, 1), "failures": failures,
            "peak_new_dialogs_per_s": peak, "subscribe_rate": rate}


def shardkill(
    shards: int, dialogs: int = 1000, seconds: int = 20, *, rate: int = 2000,
    whole: bool = False,
) -> dict[str, Any]:
    url = f"sqlite:///{Path(os.environ.get('TMPDIR', '/tmp')) / f'chaos-{os.getpid()}.db'}"
    svc = Service(shards=shards, config={"store": {"url": url}}).start()
    start = epoch_ms() + 4000
    # Each dialog gets a NOTIFY every gap; the dialogs' first NOTIFYs are spread
    # over one gap, so the server offers ``rate`` NOTIFYs a second in all.
    gap_ms = 1000.0 * dialogs / rate
    count = max(1, round(seconds * 1000.0 / gap_ms))
    uas = SippProcess(
        UAS, calls=dialogs,
        keys={"expires": 3600, "count": count, "gap_ms": f"{gap_ms:.0f}"},
        inf_rows=[(f"{start + k * gap_ms / dialogs:.1f}",) for k in range(dialogs)],
        trace_msg=False, recv_timeout_ms=600_000,
    ).start()
    try:
        async def go() -> tuple[int, float, int]:
            async with Load(
                svc.control_socket, uas.port, dialogs, shards, reconnect=whole, distinct=True
            ) as load:
                await load.subscribe_all(500)
                while epoch_ms() < start + seconds * 500:  # half-way
                    await asyncio.sleep(0.1)
                victim = svc.shard_pids[0]
                killed = time.monotonic()
                if whole:  # the supervisor and its shards; then started again
                    await asyncio.to_thread(svc.kill)
                    await asyncio.to_thread(svc.start)
                    back: float | None = time.monotonic() - killed
                else:
                    os.kill(victim, signal.SIGKILL)
                    back = None
                while back is None and time.monotonic() - killed < 30:
                    stats = await asyncio.to_thread(svc.stats)
                    if stats and stats["shards"][0]["up"] and stats["shards"][0]["pid"] != victim:
                        back = time.monotonic() - killed
                        break
                    await asyncio.sleep(0.05)
                expected = dialogs * count
                await load.wait_stream(expected, lambda: None, seconds * 2 + 60)
                # The repeats counted above may end that wait before the last
                # NOTIFYs (held up by a retransmission) are in.
                last, moved = load.distinct, time.monotonic()
                while load.distinct < expected and time.monotonic() - moved < 6.0:
                    await asyncio.sleep(0.1)
                    if load.distinct != last:
                        last, moved = load.distinct, time.monotonic()
                on_victim = dialogs if whole else sum(1 for s in load.shard if s == 0)
                return load.stream, load.distinct, back or -1.0, on_victim

        received, distinct, back_s, on_victim = asyncio.run(go())
    finally:
        svc.close()
        uas.stop(grace=1.0)
        uas.cleanup()
    offered = dialogs * count
    # Told again: the replay gives each client subscription on the killed
    # shard its last status again (from the store); each stream NOTIFY carries
    # its own stamp, so a repeat is told from a new one.
    lost, again = offered - distinct, received - distinct
    what = "service (supervisor and shards)" if whole else "shard"
    print(f"  {what} killed mid-stream at {rate} NOTIFY/s: back in {back_s:.2f} s; "
          f"{distinct} of {offered} NOTIFYs offered reached the client, {lost} never did; "
          f"{again} statuses told again ({on_victim} subscriptions on what was killed)")
    return {"offered": offered, "received": received, "distinct": distinct,
            "told_again": again, "lost": lost, "on_killed": on_victim,
            "shard_back_s": round(back_s, 2), "notify_per_s": rate}


def sigterm(n: int, shards: int) -> dict[str, Any]:
    wait = 30
    stub, port = start_stub(3600)
    svc = Service(shards=shards, config={"presence_b2b": {"wait_for_term_notify": wait}})
    svc.start()
    try:
        async def go() -> tuple[int, float, int]:
            async with Load(svc.control_socket, port, n, shards) as load:
                _, done = await load.subscribe_all(2000)
                assert svc.proc is not None
                t0 = time.monotonic()
                svc.proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(svc.proc.wait, 120)
                return done, time.monotonic() - t0, code

        done, took, code = asyncio.run(go())
    finally:
        svc.close()
        counts = stop_stub(stub)
    unsubscribed = counts.get("subscribe_unsubscribe", 0)
    print(f"  SIGTERM with {done} dialogs: exited {code} after {took:.1f} s "
          f"(wait_for_term_notify {wait} s); the server counted {unsubscribed} unsubscribes")
    return {"dialogs": done, "exit_s": round(took, 1), "exit_code": code,
            "unsubscribed": unsubscribed, "wait_for_term_notify": wait}


#: The client that is killed: subscribes n pairs, says "active" once all are, then waits.
_DOOMED = """
import sys, time
from presence_b2b.ipc.client import BlockingQsaClient

path, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = BlockingQsaClient(path, name="doomed")
ids = {client.subscribe(f"sip:doomed{i}@127.0.0.1:{port}", f"sip:d{i}@example.com")
       for i in range(n)}
while ids:
    event = client.get(60)
    if event is None:
        sys.exit(f"{len(ids)} subscriptions not active within 60 s")
    if event.kind == "status" and event.message.state == "active":
        ids.discard(event.id)
print("active", flush=True)
time.sleep(600)
"""


def clientkill(doomed: int, survivors: int, shards: int) -> dict[str, Any]:
    stub, port = start_stub(3600)
    svc = Service(shards=shards).start()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _DOOMED, svc.control_socket, str(port), str(doomed)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        async def go() -> dict[str, Any]:
            async with Load(svc.control_socket, port, survivors, shards) as load:
                await load.subscribe_all(2000)
                assert proc.stdout is not None
                line = await asyncio.to_thread(proc.stdout.readline)
                if line.strip() != "active":
                    raise RuntimeError(f"the doomed client did not get active: {line!r}")
                held_before = _held(await asyncio.to_thread(svc.stats))
                failures_before = load.failures
                killed = time.monotonic()
                proc.kill()
                await asyncio.to_thread(proc.wait)
                forgotten = ended = -1.0
                while ended < 0 and time.monotonic() - killed < 180:
                    stats = await asyncio.to_thread(svc.stats)
                    now = time.monotonic() - killed
                    if stats is not None:
                        if forgotten < 0 and stats["clients"] == 1:
                            forgotten = now
                        if _held(stats) <= survivors:
                            ended = now
                    await asyncio.sleep(0.05)
                await asyncio.sleep(2.0)  # anything that would still go wrong for the others
                stats = await asyncio.to_thread(svc.stats)
                # Counted now: leaving the Load ends the other client's dialogs too.
                counts = await asyncio.to_thread(stop_stub, stub)
                return {
                    "unsubscribed": counts.get("subscribe_unsubscribe", 0),
                    "held_before": held_before, "forgotten_s": round(forgotten, 2),
                    "dialogs_ended_s": round(ended, 2),
                    "held_after": -1 if stats is None else _held(stats),
                    "survivor_failures": load.failures - failures_before,
                }

        out = asyncio.run(go())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        svc.close()
        if stub.poll() is None:
            stop_stub(stub)
    out |= {"doomed": doomed, "survivors": survivors}
    print(f"  client with {doomed} subscriptions killed beside one with {survivors}: "
          f"forgotten after {out['forgotten_s']:.2f} s, its last dialog ended after "
          f"{out['dialogs_ended_s']:.2f} s; the server counted {out['unsubscribed']} "
          f"unsubscribes; the other client: {out['survivor_failures']} failures, "
          f"{out['held_after']} of {survivors} subscriptions held")
    return out


def _held(stats: dict[str, Any] | None) -> int:
    """Subscriptions the shards' engines hold (ending ones included)."""
    return -1 if stats is None else sum(s.get("subscriptions", 0) for s in stats["shards"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--dialogs", type=int, default=1000)
    ap.add_argument("--shards", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gone", type=float, default=60.0)
    ap.add_argument("--sigterm-dialogs", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=2000, help="NOTIFY/s in shardkill and supkill")
    ap.add_argument("--only", default="loss,gone,shardkill,supkill,sigterm,clientkill")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.dialogs, args.gone, args.sigterm_dialogs = 100, 5.0, 500
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    only = set(args.only.split(","))
    result: dict[str, Any] = {"version": code_version(), "shards": args.shards}
    print(f"chaos: {args.dialogs} dialogs, {args.shards} shard(s)")
    if "loss" in only:
        result |= loss(args.dialogs, args.shards)
    if "gone" in only:
        result["gone"] = gone(args.dialogs, args.shards, args.gone)
    if "shardkill" in only:
        result["shardkill"] = shardkill(
            args.shards, seconds=5 if args.quick else 20, rate=args.rate
        )
    if "supkill" in only:
        result["supkill"] = shardkill(
            args.shards, seconds=5 if args.quick else 20, rate=args.rate, whole=True
        )
    if "sigterm" in only:
        result["sigterm"] = sigterm(args.sigterm_dialogs, args.shards)
    if "clientkill" in only:
        result["clientkill"] = clientkill(args.sigterm_dialogs, args.dialogs, args.shards)
    print_json(result)


if __name__ == "__main__":
    main()
