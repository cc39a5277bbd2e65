"""The whole service against a SIPp presence server, through the QSA client library.

Run: ``.venv/bin/python bench/e2e.py [--shards N] [--quick] [--plot DIR]``.

``presence-b2b serve`` runs as in production (supervisor + shard processes,
defaults but for the ports); the presence server is SIPp with
bench/scenarios/uas_stream.xml on 127.0.0.1; the load client is this process:
one asyncio ``QsaClient`` on uvloop, the library applications use. Phases:

  set-up       subscribe --subs pairs, at most --window not yet active; done per
               subscription at its first ``active`` status -> subs_per_s. Then
               unsubscribe them all the same way -> unsub_per_s.
  ceiling      in the same run, after each set-up: SIPp's uac_setup.xml against
               a fresh uas_stream.xml, the same SUBSCRIBE/200/NOTIFY/200 with the
               same calls and window -> sipp_subs_per_s; ratio_vs_sipp = the two.
  throughput   --stream-dialogs dialogs; once all are up the server streams
               --stream-count NOTIFYs in each, back to back (one in flight per
               dialog) -> notify_per_s: statuses received per second between
               the 10th and 90th percentile of arrival times; CPU seconds per
               1000 NOTIFYs of each shard (psutil on the shard pids), and the
               CPU share of every process (supervisor, shards, SIPp, client).
               Run with 1, 2, ... --shards shards -> scaling.
  latency      at each --latency-rates rate R: R * gap / 1000 dialogs, each with
               one NOTIFY every --latency-gap-ms on an absolute schedule spread
               evenly over the gap (SIPp paces it: see the scenario), for
               --latency-seconds. SIPp writes gettimeofday() into the PIDF note
               just before sending ([timestamp]); latency = time.time() when the
               client takes the status off its queue - that stamp: UDP,
               the shard, its status ring, the client library's decoding and
               queue all included -> p50/p99/max. The shards' own histogram
               notify_to_client_seconds (datagram read -> status in the ring),
               scraped before and after, splits off the part inside the shard.

Medians over --repeat repetitions. Human-readable lines, then the last line: one
JSON object. Never fails on a time: the figures are a report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
from presence_b2b.ipc.client import ClientEvent, QsaClient
from presence_b2b.presence.status import Failure, SubscriptionState
from presence_b2b.server.routing import shard_of

from bench.common import (
    SCENARIOS,
    CpuMeter,
    Histogram,
    Service,
    code_version,
    exit_on_sigterm,
    median,
    percentile,
    print_json,
    pyplot,
    run_sipp_uac,
    save,
    steady_rate,
)
from tests.peers.ports import LOOPBACK
from tests.peers.sipp import SippProcess

UAS = SCENARIOS / "uas_stream.xml"
INSIDE = "notify_to_client_seconds"
UAC_SETUP = SCENARIOS / "uac_setup.xml"
STALL_SECONDS = 8.0  # longer than SUBSCRIBE/NOTIFY retransmissions take to recover a loss
EXPIRES = 3600
ACTIVE = SubscriptionState.ACTIVE
TERMINATED = SubscriptionState.TERMINATED
NOTE = b"<note>t="


def epoch_ms() -> float:
    return time.time() * 1000.0


class Load:
    """One QsaClient, a set of (record, subscriber) pairs and what came back for them."""

    def __init__(
        self, control_socket: str, uas_port: int, n: int, shards: int, *,
        reconnect: bool = False, distinct: bool = False,
    ) -> None:
        self.client = QsaClient(control_socket, name="bench-e2e", reconnect=reconnect)
        self.n = n
        self.records = [f"sip:rec{i}@{LOOPBACK}:{uas_port}" for i in range(n)]
        self.subscribers = [f"sip:sub{i}@example.com" for i in range(n)]
        pairs = zip(self.records, self.subscribers, strict=True)
        self.shard = [shard_of(r, s, shards) for r, s in pairs]
        self.active = bytearray(n + 1)  # by subscription id (1..n)
        self.setup_done = 0
        self.last_setup = 0.0
        self.ended = 0
        self.failures = 0
        self.stream = 0
        self.stream_by_shard = [0] * shards
        self.merged = 0
        #: With ``distinct``: the stream NOTIFYs told at least once (a status the
        #: client saw before, such as the last one again after a replay, is not
        #: counted), by the stamp each NOTIFY carries.
        self.distinct = 0
        self._stamps: list[set[float]] | None = (
            [set() for _ in range(n + 1)] if distinct else None
        )
        self.latencies: list[float] = []
        self.arrivals: list[float] = []
        self.progress = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Load:
        await self.client.connect()
        self._consumer = asyncio.get_running_loop().create_task(self._consume())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

    async def _consume(self) -> None:
        client, handle = self.client, self._handle
        while True:
            event = await client.next_event()
            if event is None:
                return
            handle(event)
            while (event := client.poll()) is not None:
                handle(event)

    def _handle(self, event: ClientEvent) -> None:
        msg = event.message
        if isinstance(msg, Failure):
            self.failures += 1
            if msg.retry_in is None:
                self.ended += 1
                self.progress.set()
            return
        if msg.state is ACTIVE:
            body = msg.body
            at = body.find(NOTE)
            if at >= 0:
                now = time.time()
                stamp = float(body[at + 8 : body.find(b"</note>", at)].split()[-1])
                self.latencies.append(now - stamp)
                self.arrivals.append(now)
                self.stream += 1 + msg.merged
                self.merged += msg.merged
                self.stream_by_shard[self.shard[msg.id - 1]] += 1 + msg.merged
                if self._stamps is not None and stamp not in self._stamps[msg.id]:
                    self._stamps[msg.id].add(stamp)
                    self.distinct += 1 + msg.merged
            if not self.active[msg.id]:
                self.active[msg.id] = 1
                self.setup_done += 1
                self.last_setup = time.perf_counter()
                self.progress.set()
        elif msg.state is TERMINATED:
            self.ended += 1
            self.progress.set()

    async def _wait_progress(self, stall: float) -> bool:
        self.progress.clear()
        try:
            await asyncio.wait_for(self.progress.wait(), stall)
        except TimeoutError:
            return False
        return True

    async def subscribe_all(self, window: int) -> tuple[float, int]:
        """Subscribe every pair with at most ``window`` not yet active:
        (seconds from the first subscribe to the last first-active status, how many)."""
        t0 = time.perf_counter()
        subscribe = self.client.subscribe
        for i in range(self.n):
            while i - self.setup_done >= window:
                if not await self._wait_progress(STALL_SECONDS):
                    print(f"  set-up stalled at {self.setup_done}/{self.n}", file=sys.stderr)
                    return self.last_setup - t0, self.setup_done
            await subscribe(self.records[i], self.subscribers[i])
        while self.setup_done < self.n:
            if not await self._wait_progress(STALL_SECONDS):
                print(f"  set-up stalled at {self.setup_done}/{self.n}", file=sys.stderr)
                break
        return self.last_setup - t0, self.setup_done

    async def unsubscribe_all(self, window: int) -> tuple[float, int]:
        """Unsubscribe every pair, at most ``window`` without their terminated status."""
        t0 = time.perf_counter()
        start = self.ended
        for i in range(self.n):
            while i - (self.ended - start) >= window:
                if not await self._wait_progress(STALL_SECONDS):
                    return time.perf_counter() - t0, self.ended - start
            await self.client.unsubscribe(i + 1)
        while self.ended - start < self.n:
            if not await self._wait_progress(STALL_SECONDS):
                break
        return time.perf_counter() - t0, self.ended - start

    async def wait_stream(
        self, expected: int, on_first: Callable[[], None], timeout: float
    ) -> tuple[int, int]:
        """Wait for ``expected`` stream statuses (or no progress for STALL_SECONDS).
        ``on_first`` runs once the first one is in: (count then, count at the end)."""
        deadline = time.monotonic() + timeout
        while self.stream == 0:
            if time.monotonic() > deadline:
                return 0, 0
            await asyncio.sleep(0.001)
        on_first()
        first = self.stream
        last, moved = self.stream, time.monotonic()
        while self.stream < expected:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if self.stream != last:
                last, moved = self.stream, now
            elif now - moved > STALL_SECONDS or now > deadline:
                print(f"  stream stalled at {self.stream}/{expected}", file=sys.stderr)
                break
        return first, self.stream


def stream_uas(calls: int, count: int, gap_ms: float, starts_ms: list[float]) -> SippProcess:
    """uas_stream.xml: ``count`` NOTIFYs per dialog, the k-th call's first due at starts_ms[k]."""
    return SippProcess(
        UAS,
        calls=calls,
        keys={"expires": EXPIRES, "count": count, "gap_ms": f"{gap_ms:g}"},
        inf_rows=[(f"{t:.1f}",) for t in starts_ms],
        trace_msg=False,
        recv_timeout_ms=600_000,
    ).start()


def process_names(svc: Service, uas: SippProcess) -> dict[str, int]:
    names = {"supervisor": svc.pid, **{f"shard{i}": p for i, p in enumerate(svc.shard_pids)}}
    if uas.pid is not None:
        names["sipp"] = uas.pid
    return names


def fmt_shares(shares: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.2f}" for k, v in shares.items())


def run_loop(coro: Any) -> Any:
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


# ------------------------------------------------------------------ set-up


@dataclass
class SetupRun:
    subs_per_s: float
    unsub_per_s: float
    sipp_subs_per_s: float
    done: int
    failures: int
    sipp_retransmissions: int
    cpu_share: dict[str, float]


def setup_run(svc: Service, n: int, window: int) -> SetupRun:
    uas = stream_uas(n, 0, 0, [0.0])
    try:
        meter = CpuMeter(process_names(svc, uas))

        async def go() -> tuple[float, int, float, int, int]:
            async with Load(svc.control_socket, uas.port, n, svc.shards) as load:
                meter.start()
                t_sub, done = await load.subscribe_all(window)
                shares.update(meter.shares())
                t_unsub, ended = await load.unsubscribe_all(window)
                return t_sub, done, t_unsub, ended, load.failures

        shares: dict[str, float] = {}
        t_sub, done, t_unsub, ended, failures = run_loop(go())
    finally:
        uas.stop(grace=1.0)
        uas.cleanup()
    # The ceiling: the same exchange between two SIPp processes.
    uas = stream_uas(n, 0, 0, [0.0])
    try:
        sipp = run_sipp_uac(UAC_SETUP, uas, n, window, keys={"expires": EXPIRES})
    finally:
        uas.stop(grace=0.5)
        uas.cleanup()
    if sipp.ok != n or sipp.retransmissions:
        print(f"  sipp ceiling: {sipp.ok}/{n} calls ok, {sipp.retransmissions} retransmissions")
    return SetupRun(
        subs_per_s=done / t_sub if t_sub > 0 else 0.0,
        unsub_per_s=ended / t_unsub if t_unsub > 0 else 0.0,
        sipp_subs_per_s=sipp.rate,
        done=done,
        failures=failures,
        sipp_retransmissions=sipp.retransmissions,
        cpu_share=shares,
    )


# ------------------------------------------------------------------ streams


@dataclass
class StreamRun:
    shards: int
    dialogs: int
    expected: int
    received: int
    notify_per_s: float
    latencies_ms: list[float]
    cpu_share: dict[str, float] = field(default_factory=dict)
    cpu_s_per_1k_by_shard: list[float] = field(default_factory=list)
    merged: int = 0
    failures: int = 0
    service_ms: tuple[float, float] = (0.0, 0.0)
    """p50, p99 of the service's own notify_to_client_seconds (datagram read -> ring)."""


def stream_run(
    svc: Service,
    *,
    dialogs: int,
    count: int,
    gap_ms: float,
    spread: bool,
    window: int,
    setup_rate: float,
    profile: bool = False,
) -> StreamRun:
    """``dialogs`` dialogs each streaming ``count`` NOTIFYs once all are up.

    ``spread``: first NOTIFYs spread evenly over ``gap_ms`` (a paced rate), else
    all due at the same moment (gap_ms=0: as fast as the service answers).
    """
    lead_ms = dialogs / max(setup_rate, 100.0) * 1500.0 + 1500.0
    start = epoch_ms() + lead_ms
    starts = [start + k * gap_ms / dialogs for k in range(dialogs)] if spread else [start]
    uas = stream_uas(dialogs, count, gap_ms, starts)
    meter = CpuMeter(process_names(svc, uas))
    before: list[int] = []
    inside: list[Histogram] = []
    prof = cProfile.Profile() if profile else None
    try:

        async def go() -> tuple[Load, dict[str, float], dict[str, float]]:
            loop = asyncio.get_running_loop()
            async with Load(svc.control_socket, uas.port, dialogs, svc.shards) as load:
                await load.subscribe_all(window)
                await asyncio.sleep(0.6)  # shards publish their metrics every 0.5 s
                inside0 = await loop.run_in_executor(None, svc.scrape)
                if epoch_ms() > start:
                    print("  streams started before every dialog was up", file=sys.stderr)

                def first() -> None:
                    meter.start()
                    before.extend(load.stream_by_shard)
                    if prof is not None:
                        prof.enable()

                expected = dialogs * count
                await load.wait_stream(expected, first, lead_ms / 1000 + 600)
                if prof is not None:
                    prof.disable()
                shares, cpu = meter.shares(), meter.cpu_seconds()
                await asyncio.sleep(0.6)
                inside1 = await loop.run_in_executor(None, svc.scrape)
                inside.append(inside1.histogram(INSIDE) - inside0.histogram(INSIDE))
                await load.unsubscribe_all(window)
                return load, shares, cpu

        load, shares, cpu = run_loop(go())
    finally:
        uas.stop(grace=1.0)
        uas.cleanup()
    if prof is not None:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue(), file=sys.stderr)
    run = StreamRun(
        shards=svc.shards,
        dialogs=dialogs,
        expected=dialogs * count,
        received=load.stream,
        notify_per_s=steady_rate(load.arrivals),
        latencies_ms=sorted(x * 1000.0 for x in load.latencies),
        merged=load.merged,
        failures=load.failures,
    )
    run.cpu_share = shares
    if inside:
        run.service_ms = (inside[0].quantile(0.5) * 1000, inside[0].quantile(0.99) * 1000)
    if before:
        for i in range(svc.shards):
            handled = load.stream_by_shard[i] - before[i]
            used = cpu.get(f"shard{i}", 0.0)
            run.cpu_s_per_1k_by_shard.append(used / handled * 1000 if handled else 0.0)
    return run


# ------------------------------------------------------------------ plots


def plot(
    plot_dir: str | None,
    scaling: dict[int, list[float]],
    sipp_notify: float | None,
    latency: dict[int, StreamRun],
) -> None:
    plt = pyplot(plot_dir)
    if plt is None or plot_dir is None:
        return
    shards = sorted(scaling)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    meds = [median(scaling[s]) for s in shards]
    ax.plot(shards, meds, "o-", label="presence-b2b (median)")
    for s in shards:
        ax.scatter([s] * len(scaling[s]), scaling[s], color="grey", s=10, zorder=3)
    ax.plot(shards, [meds[0] * s for s in shards], ":", color="grey", label="linear from 1 shard")
    ax.plot(
        shards, [20_000 * s for s in shards], "--", color="tab:red", lw=1,
        label="goal: 20 000/s per shard",
    )  # fmt: skip
    ax.set_xticks(shards)
    ax.set_xlabel("shards")
    ax.set_ylabel("NOTIFY -> status per second")
    ax.set_title("Steady NOTIFY throughput, whole service (2 vCPU)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(plt, fig, plot_dir, "e2e_throughput.png")

    if latency:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for rate, run in sorted(latency.items()):
            xs = run.latencies_ms
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            p99 = percentile(xs, 0.99)
            ax.plot(
                xs,
                ys,
                label=f"{rate}/s offered: p50 {percentile(xs, 0.5):.2f} ms, p99 {p99:.2f} ms",
            )
        ax.axvline(1.0, color="tab:red", ls="--", lw=1, label="goal: p99 <= 1 ms at 5 000/s")
        ax.axhline(0.99, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("NOTIFY sent by SIPp -> status at the client (ms, log)")
        ax.set_ylabel("fraction of NOTIFYs")
        ax.set_title("NOTIFY -> status latency (CDF)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3, which="both")
        save(plt, fig, plot_dir, "e2e_latency.png")


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--shards", type=int, default=os.cpu_count() or 1, help="default: cores")
    ap.add_argument("--subs", type=int, default=10_000, help="set-up phase subscriptions")
    ap.add_argument("--window", type=int, default=500, help="subscriptions in flight")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions (median reported)")
    ap.add_argument("--stream-dialogs", type=int, default=1000)
    ap.add_argument("--stream-count", type=int, default=30, help="NOTIFYs per dialog")
    ap.add_argument("--no-scaling", action="store_true", help="throughput at --shards only")
    ap.add_argument("--latency-rates", default="1000,5000", help="NOTIFY/s, comma-separated")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--latency-gap-ms", type=float, default=1000.0)
    ap.add_argument("--plot", metavar="DIR", help="write PNG plots there")
    ap.add_argument("--profile", action="store_true", help="cProfile the client in a stream")
    ap.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = ap.parse_args()
    if args.quick:
        args.subs, args.window, args.repeat = 600, 200, 1
        args.stream_dialogs, args.stream_count = 200, 10
        args.latency_rates, args.latency_seconds, args.latency_gap_ms = "500", 2.0, 500.0
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    version = code_version()
    shards = max(1, args.shards)
    rates = [int(r) for r in args.latency_rates.split(",") if r.strip()]
    print(
        f"e2e bench: {shards} shard(s), {os.cpu_count()} cores; set-up {args.subs} "
        f"subscriptions (window {args.window}); streams {args.stream_dialogs} dialogs x "
        f"{args.stream_count}; latency at {rates}/s; {args.repeat} repetition(s)"
    )

    svc = Service(shards=shards).start()
    setups: list[SetupRun] = []
    scaling: dict[int, list[float]] = {}
    streams: dict[int, list[StreamRun]] = {}
    latency: dict[int, StreamRun] = {}
    try:
        for rep in range(args.repeat):
            run = setup_run(svc, args.subs, args.window)
            setups.append(run)
            print(
                f"  set-up rep {rep + 1}: {run.subs_per_s:7.0f} subs/s  "
                f"unsubscribe {run.unsub_per_s:7.0f}/s  SIPp {run.sipp_subs_per_s:7.0f}/s  "
                f"ratio {run.subs_per_s / max(run.sipp_subs_per_s, 1e-9):.2f}  "
                f"({run.done}/{args.subs} up, {run.failures} failures)"
                f"  CPU share: {fmt_shares(run.cpu_share)}"
            )
        setup_rate = median(r.subs_per_s for r in setups)

        counts = [shards] if args.no_scaling else list(range(1, shards + 1))
        for count in counts:
            other = None if count == shards else Service(shards=count).start()
            try:
                target = svc if other is None else other
                for rep in range(args.repeat):
                    s = stream_run(
                        target,
                        dialogs=args.stream_dialogs,
                        count=args.stream_count,
                        gap_ms=0.0,
                        spread=False,
                        window=args.window,
                        setup_rate=setup_rate,
                        profile=args.profile and rep == 0 and count == shards,
                    )
                    streams.setdefault(count, []).append(s)
                    scaling.setdefault(count, []).append(s.notify_per_s)
                    share = fmt_shares(s.cpu_share)
                    per_1k = " ".join(f"{x * 1000:.1f}" for x in s.cpu_s_per_1k_by_shard)
                    print(
                        f"  stream {count} shard(s) rep {rep + 1}: {s.notify_per_s:7.0f} NOTIFY/s"
                        f"  ({s.received}/{s.expected}, {s.merged} merged)"
                        f"  CPU ms/1k NOTIFY per shard: {per_1k}"
                        f"  CPU share: {share}"
                    )
            finally:
                if other is not None:
                    other.close()

        for rate in rates:
            dialogs = max(1, round(rate * args.latency_gap_ms / 1000))
            count = max(1, round(args.latency_seconds * 1000 / args.latency_gap_ms))
            s = stream_run(
                svc,
                dialogs=dialogs,
                count=count,
                gap_ms=args.latency_gap_ms,
                spread=True,
                window=args.window,
                setup_rate=setup_rate,
            )
            latency[rate] = s
            xs = s.latencies_ms
            print(
                f"  latency at {rate}/s offered ({s.notify_per_s:.0f}/s measured, "
                f"{len(xs)} samples): p50 {percentile(xs, 0.5):.3f} ms  "
                f"p99 {percentile(xs, 0.99):.3f} ms  max {xs[-1] if xs else 0:.3f} ms; "
                f"inside the shard (/metrics): p50 {s.service_ms[0]:.3f} ms "
                f"p99 {s.service_ms[1]:.3f} ms; CPU share: {fmt_shares(s.cpu_share)}"
            )
    finally:
        svc.close()

    subs = median(r.subs_per_s for r in setups)
    sipp = median(r.sipp_subs_per_s for r in setups)
    top = streams.get(shards, [])
    notify = median(s.notify_per_s for s in top)
    per_1k = median(x for s in top for x in s.cpu_s_per_1k_by_shard)
    first = latency[rates[0]] if rates else None
    p99 = percentile(first.latencies_ms, 0.99) if first else 0.0
    share_names = sorted({k for s in top for k in s.cpu_share})
    shares = {k: round(median(s.cpu_share.get(k, 0.0) for s in top), 2) for k in share_names}
    print(f"subscriptions set up:   {subs:.0f}/s (QSA subscribe -> first active status)")
    print(
        f"SIPp-vs-SIPp set-up:    {sipp:.0f}/s -> ratio {subs / sipp if sipp else 0:.2f}"
        " (goal >= 0.5)"
    )
    print(
        f"NOTIFY -> status:       {notify:.0f}/s with {shards} shard(s), "
        f"{notify / shards:.0f}/s per shard (goal >= 20000 per shard)"
    )
    print(
        f"CPU per 1000 NOTIFYs:   {per_1k * 1000:.1f} ms per shard "
        f"(= {1000 / per_1k if per_1k else 0:.0f} NOTIFY/s per busy core)"
    )
    print(f"CPU share in a stream:  {shares}")
    for rate, s in sorted(latency.items()):
        xs = s.latencies_ms
        print(
            f"latency at {rate}/s:      p50 {percentile(xs, 0.5):.3f} ms  "
            f"p99 {percentile(xs, 0.99):.3f} ms  max {xs[-1] if xs else 0:.3f} ms"
        )
    plot(args.plot, scaling, None, latency)
    print_json(
        {
            "subs_per_s": round(subs, 1),
            "notify_per_s": round(notify, 1),
            "sipp_subs_per_s": round(sipp, 1),
            "ratio_vs_sipp": round(subs / sipp, 3) if sipp else 0.0,
            "latency_p99_ms": round(p99, 3),
            "shards": shards,
            "unsub_per_s": round(median(r.unsub_per_s for r in setups), 1),
            "notify_per_s_by_shards": {
                str(k): round(median(v), 1) for k, v in sorted(scaling.items())
            },
            "cpu_s_per_1k_notify_per_shard": round(per_1k, 4),
            "cpu_share": shares,
            "latency_ms": {
                str(rate): {
                    "offered_per_s": rate,
                    "measured_per_s": round(s.notify_per_s, 1),
                    "p50": round(percentile(s.latencies_ms, 0.5), 3),
                    "p99": round(percentile(s.latencies_ms, 0.99), 3),
                    "max": round(s.latencies_ms[-1], 3) if s.latencies_ms else 0.0,
                    "samples": len(s.latencies_ms),
                    "shard_p50": round(s.service_ms[0], 3),
                    "shard_p99": round(s.service_ms[1], 3),
                    "others_cpu": round(s.cpu_share.get("others", 0.0), 2),
                }
                for rate, s in sorted(latency.items())
            },
            "subs": args.subs,
            "repeat": args.repeat,
            "code": version,
            "failures": sum(r.failures for r in setups)
            + sum(s.failures for v in streams.values() for s in v),
        }
    )


if __name__ == "__main__":
    main()
