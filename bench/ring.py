"""Shared-memory ring against multiprocessing.Queue and a Unix SEQPACKET socket.

One producer process sends to one consumer process; the consumer of the ring
and of the socket drains from a uvloop event loop (add_reader on the eventfd
or the socket), the queue consumer blocks in ``get``. Reported per transport:

* throughput (msgs/s) for 512 B and 8 KiB messages, sent as fast as possible;
* CPU seconds per message (producer + consumer, all threads);
* one-way latency p50/p99 at a paced 10 k msgs/s, from a CLOCK_MONOTONIC
  timestamp the producer puts in each message.

Every figure is the median of a few repetitions (the target machine is small,
shared and noisy). The last line printed is one JSON object with the headline
numbers. ``--quick`` is a smoke run of a couple of seconds.

Usage: python bench/ring.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from presence_b2b.ipc.ring import Ring, RingReader

from presence_b2b import compiled

CTX = mp.get_context("fork")
RING_CAPACITY = 1 << 20
BATCH = 64
STAMP = struct.Struct("<Q")


@dataclass
class Run:
    """One measured run."""

    msgs_per_s: float
    cpu_per_msg: float


# --------------------------------------------------------------------- helpers


def _cpu() -> float:
    return time.process_time()


def _pace(rate: float, count: int, send: Callable[[int], object]) -> None:
    """Call ``send(i)`` ``count`` times at ``rate`` per second on an absolute schedule.

    Sleeps between sends and never spins: on a two-core machine a spinning
    producer would steal the consumer's core and measure the scheduler instead.
    """
    period = 1.0 / rate
    clock = time.perf_counter
    start = clock() + 0.01
    sleep = time.sleep
    for i in range(count):
        delay = start + i * period - clock()
        if delay > 0:
            sleep(delay)
        send(i)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _run_pair(
    producer: Callable[[Connection, Any], None],
    consumer: Callable[[Connection, Any], None],
    arg: Any,
) -> tuple[Any, Any]:
    """Fork a consumer and a producer, start them together, return their reports."""
    c_parent, c_child = CTX.Pipe()
    p_parent, p_child = CTX.Pipe()
    cons = CTX.Process(target=consumer, args=(c_child, arg))
    prod = CTX.Process(target=producer, args=(p_child, arg))
    cons.start()
    assert c_parent.recv() == "ready"
    prod.start()
    assert p_parent.recv() == "ready"
    c_parent.send("go")
    p_parent.send("go")
    p_report = p_parent.recv()
    c_report = c_parent.recv()
    prod.join()
    cons.join()
    return p_report, c_report


# ------------------------------------------------------------------ the ring


@dataclass
class RingArg:
    fds: tuple[int, int, int]
    count: int
    size: int
    paced: float = 0.0


def _ring_producer(conn: Connection, arg: RingArg) -> None:
    ring = Ring.attach(*(os.dup(fd) for fd in arg.fds))
    writer = ring.writer()
    payload = b"p" * arg.size
    conn.send("ready")
    conn.recv()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    if arg.paced:
        pad = b"p" * (arg.size - STAMP.size)
        clock = time.perf_counter_ns

        def send(_i: int) -> None:
            writer.write_blocking(STAMP.pack(clock()) + pad, 5.0)

        _pace(arg.paced, arg.count, send)
    else:
        left = arg.count
        batch = [payload] * BATCH
        write_batch = writer.write_batch
        wait = writer.wait_for_space
        while left >= BATCH:
            n = write_batch(batch)
            left -= n
            if n < BATCH:
                wait(5.0)
        while left:
            if writer.try_write(payload):
                left -= 1
            else:
                wait(5.0)
    conn.send((t0, _cpu() - cpu0))
    ring.close()


def _ring_consumer(conn: Connection, arg: RingArg) -> None:
    ring = Ring.attach(*(os.dup(fd) for fd in arg.fds))
    reader: RingReader = ring.reader()
    loop = uvloop.new_event_loop()
    state = {"n": 0, "end": 0.0}
    lat: list[float] = []
    count = arg.count
    unpack = STAMP.unpack_from
    clock = time.perf_counter_ns

    def on_batch(batch: list[bytes]) -> None:
        if arg.paced:
            now = clock()
            for rec in batch:
                lat.append((now - unpack(rec)[0]) / 1000.0)
        state["n"] += len(batch)
        if state["n"] >= count:
            state["end"] = time.perf_counter()
            loop.stop()

    conn.send("ready")
    conn.recv()
    cpu0 = _cpu()
    reader.attach_reader(loop, on_batch)
    loop.run_forever()
    reader.detach()
    conn.send((state["end"], _cpu() - cpu0, lat, reader.bad_records))
    ring.close()
    loop.close()


def bench_ring(count: int, size: int, paced: float = 0.0) -> tuple[Run, list[float]]:
    with Ring.create(RING_CAPACITY) as ring:
        (t0, pcpu), (t1, ccpu, lat, bad) = _run_pair(
            _ring_producer, _ring_consumer, RingArg(ring.fds(), count, size, paced)
        )
    assert bad == 0
    return Run(count / (t1 - t0), (pcpu + ccpu) / count), lat


# ----------------------------------------------------------------- the queue


@dataclass
class QueueArg:
    queue: Any
    count: int
    size: int
    paced: float = 0.0


def _queue_producer(conn: Connection, arg: QueueArg) -> None:
    payload = b"q" * arg.size
    put = arg.queue.put
    conn.send("ready")
    conn.recv()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    if arg.paced:
        pad = b"q" * (arg.size - STAMP.size)
        clock = time.perf_counter_ns
        _pace(arg.paced, arg.count, lambda _i: put(STAMP.pack(clock()) + pad))
    else:
        for _ in range(arg.count):
            put(payload)
    arg.queue.close()
    arg.queue.join_thread()
    conn.send((t0, _cpu() - cpu0))


def _queue_consumer(conn: Connection, arg: QueueArg) -> None:
    get = arg.queue.get
    lat: list[float] = []
    clock = time.perf_counter_ns
    conn.send("ready")
    conn.recv()
    cpu0 = _cpu()
    for _ in range(arg.count):
        rec = get()
        if arg.paced:
            lat.append((clock() - STAMP.unpack_from(rec)[0]) / 1000.0)
    conn.send((time.perf_counter(), _cpu() - cpu0, lat))


def bench_queue(count: int, size: int, paced: float = 0.0) -> tuple[Run, list[float]]:
    queue = CTX.Queue()
    (t0, pcpu), (t1, ccpu, lat) = _run_pair(
        _queue_producer, _queue_consumer, QueueArg(queue, count, size, paced)
    )
    return Run(count / (t1 - t0), (pcpu + ccpu) / count), lat


# ---------------------------------------------------------------- the socket


@dataclass
class SockArg:
    socks: tuple[socket.socket, socket.socket]
    count: int
    size: int
    paced: float = 0.0


def _sock_producer(conn: Connection, arg: SockArg) -> None:
    sock = arg.socks[0]
    arg.socks[1].close()
    payload = b"s" * arg.size
    send = sock.send
    conn.send("ready")
    conn.recv()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    if arg.paced:
        pad = b"s" * (arg.size - STAMP.size)
        clock = time.perf_counter_ns
        _pace(arg.paced, arg.count, lambda _i: send(STAMP.pack(clock()) + pad))
    else:
        for _ in range(arg.count):
            send(payload)
    conn.send((t0, _cpu() - cpu0))


def _sock_consumer(conn: Connection, arg: SockArg) -> None:
    sock = arg.socks[1]
    arg.socks[0].close()
    sock.setblocking(False)
    loop = uvloop.new_event_loop()
    state = {"n": 0, "end": 0.0}
    lat: list[float] = []
    count = arg.count
    recv = sock.recv
    clock = time.perf_counter_ns
    unpack = STAMP.unpack_from

    def on_readable() -> None:
        n = state["n"]
        try:
            while True:
                rec = recv(65536)
                if arg.paced:
                    lat.append((clock() - unpack(rec)[0]) / 1000.0)
                n += 1
        except BlockingIOError:
            pass
        state["n"] = n
        if n >= count:
            state["end"] = time.perf_counter()
            loop.stop()

    conn.send("ready")
    conn.recv()
    cpu0 = _cpu()
    loop.add_reader(sock.fileno(), on_readable)
    loop.run_forever()
    loop.remove_reader(sock.fileno())
    conn.send((state["end"], _cpu() - cpu0, lat))
    loop.close()


def bench_socket(count: int, size: int, paced: float = 0.0) -> tuple[Run, list[float]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        (t0, pcpu), (t1, ccpu, lat) = _run_pair(
            _sock_producer, _sock_consumer, SockArg((a, b), count, size, paced)
        )
    finally:
        a.close()
        b.close()
    return Run(count / (t1 - t0), (pcpu + ccpu) / count), lat


# ---------------------------------------------------------------------- main

BENCHES = {"ring": bench_ring, "queue": bench_queue, "socket": bench_socket}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (median taken)")
    args = parser.parse_args()
    quick = args.quick
    reps = args.reps or (1 if quick else 5)
    scale = 0.1 if quick else 1.0
    counts = {
        ("ring", 512): 2_000_000,
        ("queue", 512): 300_000,
        ("socket", 512): 1_000_000,
        ("ring", 8192): 300_000,
        ("queue", 8192): 100_000,
        ("socket", 8192): 200_000,
    }
    paced_rate = 10_000.0
    paced_count = 3000 if quick else 20_000

    results: dict[tuple[str, int], Run] = {}
    for size in (512, 8192):
        for name, bench in BENCHES.items():
            runs = [bench(int(counts[name, size] * scale), size)[0] for _ in range(reps)]
            run = Run(
                statistics.median(r.msgs_per_s for r in runs),
                statistics.median(r.cpu_per_msg for r in runs),
            )
            results[name, size] = run
            print(
                f"{name:7s} {size:5d} B  {run.msgs_per_s / 1e3:9.1f} k msgs/s  "
                f"{run.cpu_per_msg * 1e6:6.2f} us CPU/msg  "
                f"(runs: {', '.join(f'{r.msgs_per_s / 1e3:.0f}k' for r in runs)})",
                flush=True,
            )

    p99s: dict[str, float] = {}
    for name, bench in BENCHES.items():
        p50s, p99_runs = [], []
        for _ in range(max(1, reps // 2)):
            _, lat = bench(paced_count, 512, paced_rate)
            p50s.append(_percentile(lat, 0.50))
            p99_runs.append(_percentile(lat, 0.99))
        p99s[name] = statistics.median(p99_runs)
        print(
            f"{name:7s} latency at {paced_rate / 1e3:.0f} k msgs/s, 512 B: "
            f"p50 {statistics.median(p50s):7.1f} us  p99 {p99s[name]:7.1f} us",
            flush=True,
        )

    ring512 = results["ring", 512].msgs_per_s
    summary = {
        "ring_msgs_per_s_512": round(ring512),
        "queue_msgs_per_s_512": round(results["queue", 512].msgs_per_s),
        "socket_msgs_per_s_512": round(results["socket", 512].msgs_per_s),
        "ring_vs_queue": round(ring512 / results["queue", 512].msgs_per_s, 2),
        "ring_vs_socket": round(ring512 / results["socket", 512].msgs_per_s, 2),
        "p99_us_10k": round(p99s["ring"], 1),
    }
    sys.stdout.flush()
    print(json.dumps({"compiled": compiled.is_compiled(), **summary}))


if __name__ == "__main__":
    main()
