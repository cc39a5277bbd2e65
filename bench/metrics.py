"""Cost of one metric update on the shard hot path, per mechanism.

Run: ``.venv/bin/python bench/metrics.py [--number N] [--repeat R]``.
Prints ns per update (median of R repetitions of N updates, pre-bound child,
so the figure is the update itself) and the ratio against a no-op method call
measured in the same run; the last line is one JSON object. Never fails on
a time: the figures are a report.

Mechanisms:
  noop-call            baseline: a method call that does nothing
  block-memoryview     DirectCounter.inc(): read-modify-write of a float64 in the memfd block
  block-inline         ``view[i] += 1.0`` written at the call site (no call at all)
  python-int-flush     the shipped Counter.inc(): ``self.value += 1`` on a slotted
                       object; ShardMetrics.flush() copies every series into the
                       block every 0.5 s (flush cost reported apart)
  ctypes-double        ``c_double.from_buffer(block).value += 1``
  prom-default         prometheus_client Counter child .inc(), single-process (lock)
  prom-multiprocess    same with PROMETHEUS_MULTIPROC_DIR (mmap'd file per pid; lock)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _ns(stmt: str, env: dict[str, Any], number: int, repeat: int) -> float:
    times = timeit.Timer(stmt, globals=env).repeat(repeat=repeat, number=number)
    return statistics.median(times) / number * 1e9


def _interleaved(
    cases: dict[str, tuple[str, dict[str, Any]]], number: int, repeat: int
) -> dict[str, float]:
    """Median ns/op per case, cases taking turns so a load burst hits them all alike."""
    timers = {k: timeit.Timer(stmt, globals=env) for k, (stmt, env) in cases.items()}
    runs: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for k, t in timers.items():
            runs[k].append(t.timeit(number))
    return {k: statistics.median(v) / number * 1e9 for k, v in runs.items()}


class _Noop:
    __slots__ = ()

    def inc(self) -> None:
        pass


def _prometheus(number: int, repeat: int) -> dict[str, float]:
    """Counter/histogram timings of prometheus_client in whatever mode the env selects."""
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as PCounter
    from prometheus_client import Histogram as PHistogram

    reg = CollectorRegistry()
    c = PCounter("bench_total", "bench", ["state"], registry=reg).labels("active")
    h = PHistogram("bench_seconds", "bench", registry=reg)
    return {
        "counter": _ns("inc()", {"inc": c.inc}, number, repeat),
        "histogram": _ns("obs(0.003)", {"obs": h.observe}, number, repeat),
    }


def _prom_multiprocess(number: int, repeat: int) -> dict[str, float]:
    """prometheus_client picks its value class at import, so this runs in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tmp}
        out = subprocess.run(
            [sys.executable, __file__, "--child-prom", "--number", str(number),
             "--repeat", str(repeat)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--child-prom", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n, r = args.number, args.repeat
    if args.child_prom:
        print(json.dumps(_prometheus(n, r)))
        return

    from presence_b2b.metrics import MetricsBlocks, ShardMetrics
    from presence_b2b.metrics.block import HEADER_SIZE, LAYOUT
    from presence_b2b.metrics.shard import DirectCounter

    blocks = MetricsBlocks(1)
    block = blocks.shard(0)
    m = ShardMetrics(block)
    child = m.sip_notify_received.labels("active")
    view, slot = block.view, LAYOUT.base["sip_notify_received_total"]
    direct = DirectCounter(view, slot)
    cdouble = ctypes.c_double.from_buffer(block._map, HEADER_SIZE + 8 * slot)
    gauge = m.subscriptions.labels("confirmed")
    hist = m.timer_lag_seconds

    counters = _interleaved(
        {
            "noop-call": ("inc()", {"inc": _Noop().inc}),
            "block-memoryview": ("inc()", {"inc": direct.inc}),
            "block-inline": ("v[i] += 1.0", {"v": view, "i": slot}),
            "python-int-flush": ("inc()", {"inc": child.inc}),
            "ctypes-double": ("c.value += 1.0", {"c": cdouble}),
        },
        n,
        r,
    )
    prom = _prometheus(n, r)
    prom_mp = _prom_multiprocess(n // 4, r)
    counters["prom-default"] = prom["counter"]
    counters["prom-multiprocess"] = prom_mp["counter"]
    flush_us = _ns("flush()", {"flush": m.flush}, 1000, r) / 1000
    mine = _interleaved(
        {
            "gauge-set-block": ("s(3.0)", {"s": gauge.set}),
            "histogram-observe-block": ("o(0.003)", {"o": hist.observe}),
        },
        n,
        r,
    )
    others = {
        **mine,
        "histogram-observe-prom-default": prom["histogram"],
        "histogram-observe-prom-multiprocess": prom_mp["histogram"],
        f"flush-all-{LAYOUT.slots}-slots-us": flush_us,
    }
    del cdouble
    base = counters["noop-call"]
    print(f"{'mechanism (counter inc)':32} {'ns/op':>8} {'x noop':>7}")
    for name, ns in counters.items():
        print(f"{name:32} {ns:8.1f} {ns / base:7.2f}")
    print()
    for name, v in others.items():
        unit = "us" if name.endswith("-us") else "ns/op"
        print(f"{name:40} {v:8.1f} {unit}")
    # python-int-flush pays its flush every 0.5 s whatever the rate; per update at
    # 20k updates/s that is flush_us*1000 / (0.5 * 20_000) ns.
    amortised = flush_us * 1000 / (0.5 * 20_000)
    print(f"{'python-int-flush amortised @20k/s':40} {amortised:8.1f} ns/op extra")
    # Shipped: python-int-flush (metrics/shard.py). It stays the right choice while
    # an update plus its share of the flush costs well under the direct store.
    lock_free = ("block-memoryview", "python-int-flush", "ctypes-double")
    fastest = min(lock_free, key=lambda k: counters[k])
    chosen = "python-int-flush"
    print(f"fastest lock-free call-site API: {fastest}")
    print(f"chosen: {chosen}")
    print(json.dumps({
        "unit": "ns_per_op",
        "counter_inc": {k: round(v, 1) for k, v in counters.items()},
        "other": {k: round(v, 1) for k, v in others.items()},
        "flush_amortised_ns_at_20k_per_s": round(amortised, 2),
        "fastest_lock_free": fastest,
        "chosen": chosen,
    }))


if __name__ == "__main__":
    main()
