"""A soak: a steady NOTIFY load plus subscription churn for a long time, with the
service's memory and file descriptors sampled every minute.

Run: ``.venv/bin/python bench/soak.py [--seconds S] [--rate N] [--churn C] [--quick]``.

* Stream: ``--rate`` dialogs against SIPp (bench/scenarios/uas_stream.xml), each
  sent one NOTIFY per second for ``--seconds``: a steady N NOTIFY/s whose
  first NOTIFYs are spread evenly over the second.
* Churn: a second client subscribes ``--churn`` new pairs per second against
  bench/stub_uas.py and unsubscribes each one ``--hold`` seconds later, so
  about churn x hold of them are up at any time and churn/s come and go.
* The service runs with its defaults (two shards here, the SQLite dialog
  store on) but for the ports and no SUBSCRIBE rate limit.
* Every ``--sample`` seconds one JSON line: elapsed time, RSS and open fds of
  the supervisor and each shard, statuses received, churn counts, failures.

At the end: RSS and fds after the warm-up (``--warmup``, default a tenth of
the run) against the last sample, growth per hour by a least-squares slope,
and a verdict ``flat`` (growth within 5 % and fds within 8) or ``growing``;
then the last line, one JSON object. Never fails on a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from presence_b2b.ipc.client import ClientEvent, QsaClient
from presence_b2b.presence.status import Failure, SubscriptionState

from bench.capacity import start_stub, stop_stub
from bench.common import Service, code_version, exit_on_sigterm, print_json
from bench.e2e import UAS, Load, epoch_ms
from tests.peers.ports import LOOPBACK
from tests.peers.sipp import SippProcess


@dataclass
class Churn:
    """The churning client's counts."""

    subscribed: int = 0
    unsubscribed: int = 0
    statuses: int = 0
    failures: int = 0
    up: set[int] = field(default_factory=set)


@dataclass
class Sample:
    t: float
    rss: dict[str, int]
    fds: dict[str, int]
    stream: int
    churn: dict[str, int]


def figures(svc: Service) -> tuple[dict[str, int], dict[str, int]]:
    rss: dict[str, int] = {}
    fds: dict[str, int] = {}
    names = ["supervisor", *[f"shard{i}" for i in range(len(svc.shard_pids))]]
    for name, pid in zip(names, svc.pids(), strict=True):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            rss[name] = proc.memory_info().rss
            fds[name] = proc.num_fds()
    return rss, fds


async def churn_loop(
    control_socket: str, port: int, *, rate: float, hold: float, churn: Churn,
    stop: asyncio.Event,
) -> None:
    client = QsaClient(control_socket, name="bench-soak-churn", reconnect=False)
    await client.connect()

    def handle(event: ClientEvent) -> None:
        msg = event.message
        if isinstance(msg, Failure):
            churn.failures += 1
        elif msg.state is not SubscriptionState.TERMINATED:
            churn.statuses += 1

    async def consume() -> None:
        while (event := await client.next_event()) is not None:
            handle(event)

    consumer = asyncio.get_running_loop().create_task(consume())
    due: list[tuple[float, int]] = []
    n = 0
    started = time.monotonic()
    try:
        while not stop.is_set():
            now = time.monotonic()
            while n < (now - started) * rate:
                sub_id = await client.subscribe(
                    f"sip:churn{n}@{LOOPBACK}:{port}", f"sip:soak{n % 997}@example.com"
                )
                churn.subscribed += 1
                churn.up.add(sub_id)
                due.append((now + hold, sub_id))
                n += 1
            while due and due[0][0] <= now:
                _, sub_id = due.pop(0)
                await client.unsubscribe(sub_id)
                churn.up.discard(sub_id)
                churn.unsubscribed += 1
            await asyncio.sleep(0.01)
    finally:
        await client.close()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den * 3600


def soak(args: argparse.Namespace) -> dict[str, Any]:
    svc = Service(
        shards=args.shards,
        config={"store": {"url": f"sqlite:///{Path(args.workdir) / 'soak.db'}"}},
    ).start()
    stub, stub_port = start_stub(3600)
    dialogs = args.rate
    count = int(args.seconds)
    start = epoch_ms() + dialogs / 500 * 1000 + 2000
    uas = SippProcess(
        UAS,
        calls=dialogs,
        keys={"expires": int(args.seconds) + 900, "count": count, "gap_ms": "1000"},
        inf_rows=[(f"{start + k * 1000 / dialogs:.1f}",) for k in range(dialogs)],
        trace_msg=False,
        recv_timeout_ms=int(args.seconds * 1000) + 600_000,
    ).start()
    try:
        samples, received = asyncio.run(drive(args, svc, uas.port, stub_port))
    finally:
        uas.stop(grace=1.0)
        uas.cleanup()
        stub_counts = stop_stub(stub)
        svc.close()
    return verdict(args, samples, received, dialogs * count, stub_counts)


async def drive(
    args: argparse.Namespace, svc: Service, uas_port: int, stub_port: int
) -> tuple[list[Sample], int]:
    """Subscribe the stream's dialogs, churn beside them, sample until the end."""
    samples: list[Sample] = []
    churn = Churn()
    stop = asyncio.Event()

    def take(t: float, load: Load, rss: dict[str, int], fds: dict[str, int]) -> Sample:
        return Sample(
            round(t, 1), rss, fds, load.stream,
            {"subscribed": churn.subscribed, "unsubscribed": churn.unsubscribed,
             "up": len(churn.up), "statuses": churn.statuses,
             "failures": churn.failures + load.failures},
        )

    async with Load(svc.control_socket, uas_port, args.rate, svc.shards) as load:
        await load.subscribe_all(500)
        churner = asyncio.get_running_loop().create_task(churn_loop(
            svc.control_socket, stub_port, rate=args.churn, hold=args.hold,
            churn=churn, stop=stop,
        ))
        t0 = time.monotonic()
        next_sample = t0
        while (elapsed := time.monotonic() - t0) < args.seconds:
            if time.monotonic() >= next_sample:
                rss, fds = await asyncio.to_thread(figures, svc)
                samples.append(take(elapsed, load, rss, fds))
                print(json.dumps(samples[-1].__dict__), flush=True)
                next_sample += args.sample
            await asyncio.sleep(0.5)
        stop.set()
        await churner
        rss, fds = await asyncio.to_thread(figures, svc)
        samples.append(take(time.monotonic() - t0, load, rss, fds))
        return samples, load.stream


def verdict(
    args: argparse.Namespace,
    samples: list[Sample],
    received: int,
    offered: int,
    stub_counts: dict[str, int],
) -> dict[str, Any]:
    warm = [s for s in samples if s.t >= args.warmup] or samples[-1:]
    total = [(s.t, float(sum(s.rss.values()))) for s in warm]
    fds = [sum(s.fds.values()) for s in warm]
    first, last = total[0][1], total[-1][1]
    growth = (last - first) / first if first else 0.0
    fd_growth = fds[-1] - fds[0]
    flat = abs(growth) <= 0.05 and abs(fd_growth) <= 8
    churn = samples[-1].churn
    return {
        "version": code_version(),
        "seconds": args.seconds,
        "notify_rate": args.rate,
        "churn_per_s": args.churn,
        "notify_offered": offered,
        "notify_received": received,
        "churn_subscribed": churn["subscribed"],
        "churn_unsubscribed": churn["unsubscribed"],
        "failures": churn["failures"],
        "stub": stub_counts,
        "rss_after_warmup_bytes": int(first),
        "rss_last_bytes": int(last),
        "rss_growth": round(growth, 4),
        "rss_slope_bytes_per_hour": round(slope_per_hour(total)),
        "fds_after_warmup": fds[0],
        "fds_last": fds[-1],
        "verdict": "flat" if flat else "growing",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=3600.0)
    ap.add_argument("--rate", type=int, default=2000, help="NOTIFY/s (dialogs, 1/s each)")
    ap.add_argument("--churn", type=float, default=100.0, help="subscribe+unsubscribe per s")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds a churned pair is up")
    ap.add_argument("--shards", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=-1.0, help="default: a tenth of the run")
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--quick", action="store_true", help="a 20 s smoke run")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rate, args.churn, args.hold, args.sample = 20.0, 200, 20.0, 3.0, 5.0
    if args.warmup < 0:
        args.warmup = args.seconds / 10
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    print(
        f"soak: {args.seconds:g} s, {args.rate} NOTIFY/s, churn {args.churn:g}/s "
        f"(held {args.hold:g} s), {args.shards} shard(s), a sample every {args.sample:g} s"
    )
    result = soak(args)
    print_json(result)


if __name__ == "__main__":
    main()
