"""How many idle subscriptions the service holds, and what holding them costs.

Run: ``.venv/bin/python bench/capacity.py [--subs M] [--rate R] [--quick] [--plot DIR]``.

``presence-b2b serve`` (defaults but for the ports, ``sip.subscribe_rate = R``
and a short ``resubscribe_delta``) holds M subscriptions from one in-process
``QsaClient`` against bench/stub_uas.py, a presence server that keeps no state
per dialog (SIPp keeps a call object and timers per dialog; see the stub's
docstring). Phases:

  establish   subscribe M pairs (at most --window not yet active; the service's
              token bucket sets the pace) -> establish_s, from the first
              subscribe to the last first-active status.
  idle        wait --idle-wait seconds (client transactions end after 64*T1 = 32 s,
              and a subscription quiet for T4 + 1 = 6 s rests, packed)
              -> RSS of supervisor + shards (psutil) over M =
              rss_bytes_per_sub; also the RSS above the empty service, over M.
  refresh     the stub grants an Expires chosen so the first refreshes come
              after the idle phase; watch until M refreshes were sent (from
              /metrics) -> refresh rate seen, service CPU per refresh, and the
              steady refresh load M / (granted - resubscribe_delta) that the
              production defaults (3600 s, 30 s) would give.

Throughout, /metrics is scraped every --sample seconds: the timer lag histogram
``presence_b2b_timer_lag_seconds`` (summed over shards; percentiles interpolated
inside Prometheus buckets whose first bound is 1 ms) over the whole run and per
interval, and RSS against subscriptions held. At the end, the shards' full
collections (``presence_b2b_gc_pause_seconds{generation="2"}``): how many, and
how many stopped a shard for over 100 ms.

Human-readable lines, then the last line: one JSON object. Never fails on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
from presence_b2b.ipc.client import ClientEvent, QsaClient, QsaError, admin
from presence_b2b.presence.status import Failure, SubscriptionState

from bench.common import (
    CpuMeter,
    Histogram,
    Scrape,
    Service,
    code_version,
    cpu_of,
    exit_on_sigterm,
    print_json,
    pyplot,
    rss_of,
    save,
)
from tests.peers.ports import LOOPBACK

STUB = Path(__file__).resolve().parent / "stub_uas.py"
STALL_SECONDS = 30.0
LAG = "timer_lag_seconds"
REFRESH = {"method": "SUBSCRIBE", "kind": "refresh"}
PROD_EXPIRES, PROD_DELTA = 3600, 30


@dataclass
class Sample:
    t: float
    established: int
    rss: int
    lag: Histogram
    refreshes: float
    cpu: float


@dataclass
class Sampler:
    """Scrapes /metrics and reads RSS/CPU every ``interval`` seconds in a thread."""

    svc: Service
    interval: float
    established: list[int]
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def take(self) -> Sample:
        scrape: Scrape = self.svc.scrape()
        pids = self.svc.pids()
        cpu = sum(cpu_of(pids).values())
        sample = Sample(
            t=time.monotonic(),
            established=self.established[0],
            rss=sum(rss_of(pids).values()),
            lag=scrape.histogram(LAG),
            refreshes=scrape.total("sip_requests_sent_total", **REFRESH),
            cpu=cpu,
        )
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                self.take()

    def start(self) -> None:
        self.take()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


class Holder:
    """The QSA client side: subscribe M pairs, count first-active statuses."""

    def __init__(self, control_socket: str, stub_port: int, m: int) -> None:
        self.client = QsaClient(control_socket, name="bench-capacity", reconnect=False)
        self.m = m
        self.stub_port = stub_port
        self.active = bytearray(m + 1)
        self.established = [0]  # shared with the sampler thread
        self.last_active = 0.0
        self.failures = 0
        self.statuses = 0
        self.progress = asyncio.Event()

    def _handle(self, event: ClientEvent) -> None:
        msg = event.message
        self.statuses += 1
        if isinstance(msg, Failure):
            self.failures += 1
            return
        if msg.state is SubscriptionState.ACTIVE and not self.active[msg.id]:
            self.active[msg.id] = 1
            self.established[0] += 1
            self.last_active = time.monotonic()
            self.progress.set()

    async def consume(self) -> None:
        client = self.client
        while (event := await client.next_event()) is not None:
            self._handle(event)
            while (event := client.poll()) is not None:
                self._handle(event)

    async def establish(self, window: int) -> float:
        """Subscribe every pair; seconds from the first subscribe to the last active."""
        t0 = time.monotonic()
        host = f"{LOOPBACK}:{self.stub_port}"
        subscribe = self.client.subscribe
        for i in range(self.m):
            while i - self.established[0] >= window:
                if not await self._wait(STALL_SECONDS):
                    return max(0.0, self.last_active - t0)
            await subscribe(f"sip:rec{i}@{host}", f"sip:sub{i}@example.com")
        while self.established[0] < self.m:
            if not await self._wait(STALL_SECONDS):
                print(f"  establishment stalled at {self.established[0]}/{self.m}")
                break
        return max(0.0, self.last_active - t0)

    async def _wait(self, stall: float) -> bool:
        self.progress.clear()
        try:
            await asyncio.wait_for(self.progress.wait(), stall)
        except TimeoutError:
            return False
        return True


def start_stub(expires: int, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(STUB), "--port", str(port), "--expires", str(expires)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "ready":
        proc.kill()
        raise RuntimeError(f"stub presence server did not start: {line}")
    return proc, int(line[1])


def stop_stub(proc: subprocess.Popen[str]) -> dict[str, int]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {}
    with contextlib.suppress(ValueError, IndexError):
        counts: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return counts
    return {}


async def memory_split(control_socket: str) -> dict[str, dict[str, int]]:
    """Each process's RSS as ``ctl memory`` splits it: pymalloc's live blocks,
    the room pymalloc keeps (free blocks and pools), malloc's live and free
    bytes, and the rest (code, stacks, pages the allocators do not count).
    Empty when the service has no such command."""
    try:
        reply = await admin(control_socket, "memory")
    except (QsaError, OSError):
        return {}
    if not reply.ok or not isinstance(reply.data, dict):
        return {}
    processes = {"supervisor": reply.data["supervisor"]}
    for shard in reply.data["shards"]:
        processes[f"shard{shard.get('shard', '?')}"] = shard
    split: dict[str, dict[str, int]] = {}
    for name, f in processes.items():
        if "rss_bytes" not in f:
            continue
        py, c = f.get("pymalloc", {}), f.get("malloc", {})
        parts = {
            "pymalloc_blocks": py.get("allocated_blocks_bytes", 0),
            "pymalloc_free": py.get("arenas_bytes", 0) - py.get("allocated_blocks_bytes", 0),
            "malloc_in_use": c.get("in_use_bytes", 0),
            "malloc_free": c.get("free_bytes", 0),
        }
        other = f["rss_bytes"] - sum(parts.values())
        split[name] = {"rss": f["rss_bytes"], **parts, "other": other}
    return split


def print_memory(report: dict[str, object], established: int) -> None:
    """Per process and part: bytes per subscription above the empty service."""
    memory, empty = report.get("memory") or {}, report.get("memory_empty") or {}
    assert isinstance(memory, dict) and isinstance(empty, dict)
    for name, parts in memory.items():
        before = empty.get(name, {})
        per = {k: (v - before.get(k, 0)) / max(established, 1) for k, v in parts.items()}
        print(
            f"  {name:<10} bytes per subscription above empty: "
            + ", ".join(f"{k} {v:.0f}" for k, v in per.items())
        )


def lag_series(samples: list[Sample]) -> list[tuple[float, float, float, float]]:
    """(seconds since start, p50 ms, p99 ms, timers fired) per sampling interval."""
    out: list[tuple[float, float, float, float]] = []
    for a, b in itertools.pairwise(samples):
        d = b.lag - a.lag
        if d.count > 0:
            t = b.t - samples[0].t
            out.append((t, d.quantile(0.5) * 1000, d.quantile(0.99) * 1000, d.count))
    return out


def plot(plot_dir: str | None, samples: list[Sample], marks: dict[str, float], m: int) -> None:
    plt = pyplot(plot_dir)
    if plt is None or plot_dir is None or len(samples) < 2:
        return
    t0 = samples[0].t
    growing = [s for s in samples if s.established > 0]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = [s.established / 1000 for s in growing]
    ax.plot(xs, [s.rss / 2**20 for s in growing], ".-", ms=3, label="supervisor + shards RSS")
    base = samples[0].rss / 2**20
    ax.plot(
        [0, m / 1000], [base, base + m * 1024 / 2**20], ":", color="tab:red",
        label="goal: 1 KiB per subscription",
    )  # fmt: skip
    ax.set_xlabel("subscriptions held (thousands)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Service memory against subscriptions held")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(plt, fig, plot_dir, "capacity_rss.png")

    series = lag_series(samples)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 4.8), sharex=True)
    rates = []
    for a, b in itertools.pairwise(samples):
        dt = b.t - a.t
        if dt > 0:
            rates.append(
                (b.t - t0, (b.established - a.established) / dt, (b.refreshes - a.refreshes) / dt)
            )
    top.plot([r[0] for r in rates], [r[1] for r in rates], label="subscriptions established/s")
    top.plot([r[0] for r in rates], [r[2] for r in rates], label="refresh SUBSCRIBEs sent/s")
    top.set_ylabel("per second")
    top.legend(fontsize=7)
    top.grid(alpha=0.3)
    if series:
        bottom.plot([x[0] for x in series], [x[2] for x in series], label="p99", color="tab:red")
        bottom.plot([x[0] for x in series], [x[1] for x in series], label="p50", color="tab:blue")
    bottom.set_yscale("log")
    bottom.set_ylabel("timer lag (ms, log)")
    bottom.set_xlabel("seconds since start")
    for k, (name, t) in enumerate(marks.items()):
        for ax in (top, bottom):
            ax.axvline(t, color="grey", ls=":", lw=1)
        top.text(t, 0.55 - 0.15 * k, f" {name}", transform=top.get_xaxis_transform(), fontsize=7)
    if series:
        bottom.legend(fontsize=7)
    bottom.grid(alpha=0.3, which="both")
    top.set_title("Timer lag per sampling interval (from /metrics)")
    save(plt, fig, plot_dir, "capacity_timer_lag.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--subs", type=int, default=100_000, help="subscriptions to hold")
    ap.add_argument("--shards", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rate", type=float, default=1000.0, help="sip.subscribe_rate (/s)")
    ap.add_argument("--window", type=int, default=2000, help="subscriptions not yet active")
    ap.add_argument("--idle-wait", type=float, default=45.0, help="seconds before the RSS")
    ap.add_argument("--delta", type=int, default=10, help="presence_b2b.resubscribe_delta")
    ap.add_argument("--no-refresh", action="store_true", help="skip the refresh phase")
    ap.add_argument("--sample", type=float, default=1.0, help="seconds between scrapes")
    ap.add_argument("--plot", metavar="DIR", help="write PNG plots there")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2000 subscriptions")
    args = ap.parse_args()
    if args.quick:
        args.subs, args.rate, args.idle_wait, args.delta, args.sample = 2000, 1000.0, 1.0, 2, 0.5
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    version = code_version()
    m = args.subs
    estimate = m / args.rate
    # Refreshes start once establishment and the idle wait are over.
    interval = estimate * 1.5 + args.idle_wait + (3 if args.quick else 10)
    expires = int(interval + args.delta + 1)
    print(
        f"capacity bench: {m} subscriptions, {args.shards} shard(s), subscribe_rate "
        f"{args.rate:g}/s, granted Expires {expires} s (refresh after {expires - args.delta} s)"
    )
    svc = Service(
        shards=args.shards,
        config={
            "sip": {"subscribe_rate": args.rate},
            "presence_b2b": {"resubscribe_delta": args.delta, "min_resubscribe_time": 1},
        },
    )
    stub, stub_port = start_stub(expires)
    stub_counts: dict[str, int] = {}
    samples: list[Sample] = []
    marks: dict[str, float] = {}
    report: dict[str, object] = {}
    try:
        svc.start()
        time.sleep(1.0)
        rss_empty = svc.rss()
        holder = Holder(svc.control_socket, stub_port, m)
        sampler = Sampler(svc, args.sample, holder.established)
        samples = sampler.samples
        sampler.start()
        t_start = sampler.samples[0].t
        names = {"supervisor": svc.pid, **{f"shard{i}": p for i, p in enumerate(svc.shard_pids)}}

        async def run() -> dict[str, object]:
            await holder.client.connect()
            memory_empty = await memory_split(svc.control_socket)
            consumer = asyncio.get_running_loop().create_task(holder.consume())
            busy = CpuMeter({**names, "stub": stub.pid})
            busy.start()
            establish_s = await holder.establish(args.window)
            shares = busy.shares()
            marks["established"] = holder.last_active - t_start
            print(
                f"  established {holder.established[0]}/{m} in {establish_s:.1f} s; CPU share: "
                + " ".join(f"{k} {v:.2f}" for k, v in shares.items())
            )
            await asyncio.sleep(args.idle_wait)
            memory = await memory_split(svc.control_socket)
            rss = rss_of(svc.pids())
            total = sum(rss.values())
            out: dict[str, object] = {
                "memory": memory,
                "memory_empty": memory_empty,
                "establish_s": establish_s,
                "rss_total": total,
                "rss_by_process": rss,
                "rss_empty": rss_empty,
                "establish_cpu_share": shares,
            }
            marks["RSS read"] = time.monotonic() - t_start
            if not args.no_refresh:
                meter = CpuMeter(names)
                meter.start()
                first = sampler.take().refreshes
                t_ref = time.monotonic()
                deadline = t_ref + interval + estimate * 2 + 30
                seen = first
                while seen - first < holder.established[0] and time.monotonic() < deadline:
                    await asyncio.sleep(args.sample)
                    seen = samples[-1].refreshes
                cpu = sum(meter.cpu_seconds().values())
                t_end = time.monotonic()
                marks["refreshed"] = t_end - t_start
                # The refresh rate while refreshes flow: from the first to the last
                # sample in which the refresh counter moved.
                moving = [
                    (a, b)
                    for a, b in itertools.pairwise(samples)
                    if b.t >= t_ref and b.refreshes > a.refreshes
                ]
                span = moving[-1][1].t - moving[0][0].t if moving else 0.0
                out.update(
                    refreshes=seen - first,
                    refresh_span_s=span,
                    refresh_cpu_s=cpu,
                    refresh_window_s=t_end - t_ref,
                )
                # Each refresh woke its subscription and it rests again after
                # rest_after (6 s): the RSS once the wave has settled.
                await asyncio.sleep(min(args.idle_wait, 15.0))
                out.update(
                    rss_after_refresh=sum(rss_of(svc.pids()).values()),
                    memory_after_refresh=await memory_split(svc.control_socket),
                )
            pauses = svc.scrape().histogram("gc_pause_seconds", generation="2")
            out.update(gc_full=pauses.count, gc_full_over_100ms=pauses.above(0.1))
            consumer.cancel()
            return out

        loop = uvloop.new_event_loop()
        try:
            report = loop.run_until_complete(run())
        finally:
            sampler.stop()
            svc.close()  # before the client closes: no million unsubscribes on the way out
            with contextlib.suppress(Exception):
                loop.run_until_complete(holder.client.close())
            loop.close()
    finally:
        svc.close()
        stub_counts = stop_stub(stub)

    established = holder.established[0]
    total = int(report.get("rss_total", 0))  # type: ignore[call-overload]
    per_sub = total / max(established, 1)
    marginal = (total - rss_empty) / max(established, 1)
    whole = samples[-1].lag - samples[0].lag if len(samples) > 1 else Histogram(())
    series = lag_series(samples)
    refreshes = float(report.get("refreshes", 0))  # type: ignore[arg-type]
    span = float(report.get("refresh_span_s", 0))  # type: ignore[arg-type]
    ref_cpu = float(report.get("refresh_cpu_s", 0))  # type: ignore[arg-type]
    window = float(report.get("refresh_window_s", 0))  # type: ignore[arg-type]
    ms_per_refresh = ref_cpu / refreshes * 1000 if refreshes else 0.0
    steady = established / (PROD_EXPIRES - PROD_DELTA)
    by_proc = report.get("rss_by_process", {})
    print(f"  stub presence server: {stub_counts}")
    print(f"subscriptions held:     {established}/{m} ({holder.failures} failures)")
    print(
        f"established in:         {report.get('establish_s', 0):.1f} s "
        f"({established / max(float(report.get('establish_s', 1)), 1e-9):.0f}/s; "  # type: ignore[arg-type]
        f"subscribe_rate {args.rate:g}/s)"
    )
    print(
        f"RSS:                    {total / 2**20:.1f} MiB total = {per_sub:.0f} bytes per "
        f"subscription ({marginal:.0f} above the empty service's {rss_empty / 2**20:.1f} MiB);"
        f" by pid {by_proc}"
    )
    print_memory(report, established)
    after_refresh = int(report.get("rss_after_refresh", 0))  # type: ignore[call-overload]
    if after_refresh:
        print(
            f"RSS after the refresh:  {after_refresh / 2**20:.1f} MiB = "
            f"{after_refresh / max(established, 1):.0f} bytes per subscription"
        )
        print_memory({"memory": report.get("memory_after_refresh"),
                      "memory_empty": report.get("memory_empty")}, established)
    if refreshes:
        print(
            f"refreshes:              {refreshes:.0f} in {span:.1f} s ({refreshes / span:.0f}/s "
            f"while flowing); service CPU {ref_cpu:.1f} s over {window:.0f} s "
            f"= {ms_per_refresh:.2f} ms per refresh"
        )
        print(
            f"steady refresh load at Expires {PROD_EXPIRES}: {steady:.1f}/s "
            f"= {steady * ms_per_refresh / 1000:.3f} of a core"
        )
    p50, p99 = whole.quantile(0.5) * 1000, whole.quantile(0.99) * 1000
    worst = max((x[2] for x in series), default=0.0)
    print(
        f"timer lag:              p50 {p50:.2f} ms  p99 {p99:.2f} ms over {whole.count:.0f} "
        f"timers; worst interval p99 {worst:.1f} ms"
    )
    gc_full = int(report.get("gc_full", 0))  # type: ignore[call-overload]
    gc_slow = int(report.get("gc_full_over_100ms", 0))  # type: ignore[call-overload]
    print(f"full collections:       {gc_full} in the shards, {gc_slow} of them over 100 ms")
    plot(args.plot, samples, marks, m)
    print_json(
        {
            "subscriptions": established,
            "rss_bytes_per_sub": round(per_sub, 1),
            "establish_s": round(float(report.get("establish_s", 0.0)), 2),  # type: ignore[arg-type]
            "timer_lag_p99_ms": round(p99, 3),
            "rss_bytes_per_sub_above_empty": round(marginal, 1),
            "rss_total_bytes": total,
            "subscribe_rate": args.rate,
            "shards": args.shards,
            "timer_lag_p50_ms": round(p50, 3),
            "timer_lag_worst_interval_p99_ms": round(worst, 3),
            "gc_full_collections": gc_full,
            "gc_full_over_100ms": gc_slow,
            "refreshes": int(refreshes),
            "refresh_per_s": round(refreshes / span, 1) if span else 0.0,
            "cpu_ms_per_refresh": round(ms_per_refresh, 3),
            "steady_refresh_per_s_at_3600": round(steady, 1),
            "failures": holder.failures,
            "code": version,
            "memory": report.get("memory", {}),
            "rss_bytes_per_sub_after_refresh": round(after_refresh / max(established, 1), 1),
            "establish_cpu_share": {
                k: round(v, 2)
                for k, v in report.get("establish_cpu_share", {}).items()  # type: ignore[attr-defined]
            },
            "stub": stub_counts,
        }
    )


if __name__ == "__main__":
    main()
