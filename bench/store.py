"""The dialog store: batched write throughput, batch latency, load time, loop lag.

For each back-end (SQLite in WAL mode on a temporary file; PostgreSQL started
on a loopback port in a temporary directory, as the tests do):

* batched write throughput (rows/s): batches of ``--batch`` changed dialogs,
  one transaction each, against the same-run baseline of one transaction per
  row (what writing every change at once would cost);
* batch latency: the median time to write one batch of 1, 100 and 1 000 rows
  (a batch of 1 is what a synchronous write costs: creation, termination);
* load time: ``load`` of a shard's dialogs from a table of ``--dialogs``
  (100 000 by default), for 1 and 4 shards;
* event-loop lag: the longest a 1 ms ticker on uvloop was late while a
  ``DialogStore`` flushed 10 000 rows, against the same write done inline on
  the loop (what the writer thread saves the loop).

Every figure is the median of ``--reps`` repetitions; the last line printed is
one JSON object with the headline numbers. ``--quick`` is a smoke run.

Usage: python bench/store.py [--quick] [--reps N] [--dialogs N] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
from presence_b2b.store.backend import Backend
from presence_b2b.store.buffer import Batch
from presence_b2b.store.connect import open_backend
from presence_b2b.store.driver import DialogStore
from presence_b2b.store.record import CSEQ_BLOCK, DialogRecord

from tests.peers.postgres import PostgresServer, postgres_missing

STATUS = b"\x85" + b"x" * 600  # about what an encoded status message with a PIDF weighs


def dialog(n: int, cseq: int = 1) -> DialogRecord:
    return DialogRecord(
        package="presence", record=f"sip:user{n}@example.com",
        subscriber=f"sip:watcher{n % 1000}@example.org", call_id=f"{n:016x}@b2b",
        local_tag=f"{n:08x}", remote_tag=f"r{n:08x}", local_cseq=cseq,
        route_set=("sip:proxy.example.com;lr",), remote_target=f"sip:pa{n % 7}@192.0.2.7:5060",
        expires_at=1.9e9, refresh_at=1.9e9 - 30, last_status=STATUS, owner="bench",
        cseq_high=cseq + CSEQ_BLOCK,
    )  # fmt: skip


def held(store: Backend) -> dict[int, int]:
    return {p: h.epoch for p, h in store.lease_round({}, claim=True).items()}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_throughput(store: Backend, rows: int, batch: int, base: int) -> float:
    epochs = held(store)
    records = [dialog(base + n) for n in range(rows)]
    chunks = [records[i : i + batch] for i in range(0, rows, batch)]
    batches = [Batch({r.key: r for r in chunk}) for chunk in chunks]
    seconds = sum(timed(lambda b=b: store.write(b, epochs)) for b in batches)
    return rows / seconds


def batch_latency(store: Backend, size: int, reps: int) -> float:
    epochs = held(store)
    times = []
    for rep in range(reps):
        batch = Batch({r.key: r for r in (dialog(n, cseq=rep + 2) for n in range(size))})
        times.append(timed(lambda b=batch: store.write(b, epochs)))
    return statistics.median(times)


def fill(store: Backend, count: int) -> None:
    epochs = held(store)
    for start in range(0, count, 5000):
        chunk = [dialog(n) for n in range(start, min(count, start + 5000))]
        store.write(Batch({r.key: r for r in chunk}), epochs)


async def worst_lag(work: Callable[[], Any]) -> float:
    """Longest a 1 ms ticker was late while ``work()`` (a coroutine) ran."""
    lag = 0.0
    done = False

    async def ticker() -> None:
        nonlocal lag
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lag = max(lag, time.perf_counter() - before - 0.001)

    task = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0.01)
    await work()
    done = True
    await task
    return lag


def loop_lag(url: str, rows: int) -> tuple[float, float]:
    async def threaded() -> float:
        store = DialogStore(
            lambda: open_backend(url, node="bench"),
            shard=0, shards=1, interval=60, lease_seconds=10, keeper=True,
        )  # fmt: skip
        await store.start()
        for n in range(rows):
            store.put(dialog(n, cseq=9))
        lag = await worst_lag(store.flush)
        await store.close()
        return lag

    async def inline() -> float:
        store = open_backend(url, node="bench")
        epochs = held(store)
        batch = Batch({r.key: r for r in (dialog(n, cseq=10) for n in range(rows))})

        async def write() -> None:
            store.write(batch, epochs)

        lag = await worst_lag(write)
        store.close()
        return lag

    return uvloop.run(threaded()), uvloop.run(inline())


def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    store = open_backend(url, node="bench")
    reps = args.reps
    rows = args.rows
    batched = statistics.median(
        write_throughput(store, rows, args.batch, 10_000_000 + i * rows) for i in range(reps)
    )
    single = statistics.median(
        write_throughput(store, max(rows // 20, 50), 1, 20_000_000 + i * rows)
        for i in range(reps)
    )
    latency = {size: batch_latency(store, size, reps) for size in (1, 100, 1000)}
    fill(store, args.dialogs)
    load_1 = statistics.median(timed(lambda: store.load(0, 1)) for _ in range(reps))
    load_4 = statistics.median(timed(lambda: store.load(0, 4)) for _ in range(reps))
    store.close()
    lag_threaded, lag_inline = loop_lag(url, min(10_000, args.dialogs))
    figures = {
        "batched_rows_per_s": batched,
        "single_rows_per_s": single,
        "batched_vs_single": batched / single,
        "batch_1_ms": latency[1] * 1e3,
        "batch_100_ms": latency[100] * 1e3,
        "batch_1000_ms": latency[1000] * 1e3,
        "load_all_s": load_1,
        "load_quarter_s": load_4,
        "loop_lag_threaded_ms": lag_threaded * 1e3,
        "loop_lag_inline_ms": lag_inline * 1e3,
    }
    print(f"\n{name}: {args.dialogs} dialogs, batches of {args.batch}, median of {reps}")
    print(f"  batched writes      {batched:12,.0f} rows/s")
    print(f"  one row per commit  {single:12,.0f} rows/s   (batched: x{batched / single:.1f})")
    for size in (1, 100, 1000):
        print(f"  batch of {size:<5}      {latency[size] * 1e3:12.2f} ms")
    print(f"  load {args.dialogs} (1 shard)  {load_1:8.3f} s;  1 of 4 shards {load_4:.3f} s")
    print(
        f"  loop lag during a {min(10_000, args.dialogs)}-row flush: {lag_threaded * 1e3:.2f} ms"
        f" in the writer thread, {lag_inline * 1e3:.1f} ms inline"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dialogs", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    if args.quick:
        args.reps, args.dialogs, args.rows = 1, 2_000, 1_000
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pb2b-bench-store-") as tmp:
        report["sqlite"] = run_backend("SQLite (WAL)", f"sqlite:///{tmp}/dialogs.db", args)
    why = postgres_missing()
    if why is None:
        server = PostgresServer()
        try:
            server.start()
            report["postgresql"] = run_backend("PostgreSQL", server.create_database(), args)
        finally:
            server.cleanup()
    else:
        print(f"\nPostgreSQL skipped: {why}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
