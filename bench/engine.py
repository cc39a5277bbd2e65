"""One shard engine against a SIPp presence server on 127.0.0.1: rates, CPU and memory.

Run: ``.venv/bin/python bench/engine.py [--subs N] [--repeat R] [--quick] [--profile]``.

The engine runs in this process on uvloop with one UDP socket, exactly as a shard
does; the presence server is SIPp with tests/integration/scenarios/uas_load_notify.xml.
Each repetition has three phases, each a closed loop that keeps at most
``--window`` subscriptions in flight (so neither side's socket buffer overflows):

  subscribe    subscribe N; done per subscription at its first active Status
               -> subs_per_s
  idle         all N dialogs up and idle -> RSS per subscription (psutil, first
               repetition only: later ones reuse memory the first one freed)
  notify       refresh every dialog; the server answers and sends 5 NOTIFYs in a
               row in the established dialog -> notify_per_s = 5N / phase time,
               and CPU seconds (getrusage of this process) per 1000 NOTIFYs.
               The phase also carries the N refresh transactions (1 per 5 NOTIFYs).
  unsubscribe  Expires: 0, 200, NOTIFY terminated -> final Status

Baseline, in the same run: SIPp's uac_load.xml against SIPp's uas_load.xml, the
same exchange as the subscribe + unsubscribe phases (SUBSCRIBE/200/NOTIFY/200 then
SUBSCRIBE 0/200/NOTIFY/200), with the same number of calls in flight.
``ratio_vs_sipp`` compares like with like: engine cycles/s (N over subscribe +
unsubscribe phase time) over SIPp cycles/s; ``sipp_subs_per_s`` is SIPp's cycles/s
(each cycle establishes one subscription).

Medians over the repetitions. Prints human-readable lines; the last line is one
JSON object. Never fails on a time: the figures are a report.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import pstats
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import uvloop
from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.presence.status import Failure, StatusMessage, SubscriptionState
from presence_b2b.shard.engine import Engine, LocalEndpoint
from presence_b2b.shard.engine_metrics import MetricsObserver
from presence_b2b.shard.output import Output
from presence_b2b.shard.transport import EngineDriver, bind_udp

from bench.common import run_sipp_uac
from presence_b2b.config import B2BParams, SipSettings
from tests.peers.sipp import SippProcess

ROOT = Path(__file__).resolve().parent.parent
UAS_SCENARIO = ROOT / "tests" / "integration" / "scenarios" / "uas_load_notify.xml"
NOTIFIES_PER_REFRESH = 5
STALL_SECONDS = 8.0  # longer than T1-based SUBSCRIBE retransmissions take to recover a loss
LOOPBACK = "127.0.0.1"


@dataclass
class Run:
    """One repetition's figures."""

    subs_per_s: float
    notify_per_s: float
    unsub_per_s: float
    cycles_per_s: float
    cpu_s_per_1k_notify: float
    rss_bytes_per_sub: float | None
    failures: int
    stalled: int


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Bench:
    """The engine, its counters and a windowed pump for one phase at a time."""

    def __init__(self, n: int, window: int, uas_port: int) -> None:
        self.n = n
        self.window = window
        self.record = [f"sip:rec{i}@{LOOPBACK}:{uas_port}" for i in range(n)]
        self.subscriber = [f"sip:sub{i}@example.com" for i in range(n)]
        self.loop = uvloop.new_event_loop()
        sock = bind_udp(LOOPBACK, 0)
        port = sock.getsockname()[1]
        self.driver = EngineDriver(self.loop)
        self.transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(lambda: self.driver, sock=sock)
        )
        params = B2BParams(default_expiration=3600, wait_for_term_notify=5)
        self.engine = Engine(
            params,
            SipSettings(),
            LocalEndpoint(LOOPBACK, port),
            clock=self.driver.clock,
            observer=MetricsObserver(ShardMetrics(MetricsBlock.create("bench"))),
        )
        self.driver.engine = self.engine
        self.driver.consumer = self._consume
        self.active = [0] * n  # active Statuses per subscription
        self.done_count = 0  # subscriptions past the current phase's goal
        self.goal = 1  # active Statuses a subscription needs to be done in this phase
        self.ended = 0
        self.failures = 0
        self.stalled = 0  # subscriptions a phase gave up waiting for
        self.next_id = 0
        self.phase_done: asyncio.Future[None] | None = None
        self._pump_queued = False
        self._start: Callable[[int], object] = lambda i: None

    # engine output: count, never keep the messages
    def _consume(self, out: Output, arrived: float | None) -> None:
        for msg in out.messages:
            self._deliver(msg)
        for sub_id in out.finished:
            self._finished(sub_id)

    def _deliver(self, msg: StatusMessage) -> None:
        if isinstance(msg, Failure):
            self.failures += 1
            return
        if msg.state is SubscriptionState.ACTIVE:
            i = msg.id
            self.active[i] += 1
            if self.active[i] == self.goal:
                self.done_count += 1
                self._queue_pump()

    def _finished(self, sub_id: int) -> None:
        self.ended += 1
        self._queue_pump()

    def _queue_pump(self) -> None:
        if not self._pump_queued:
            self._pump_queued = True
            self.loop.call_soon(self._pump)

    def _progress(self) -> int:
        return self.ended if self.goal == 0 else self.done_count

    def _pump(self) -> None:
        """Start subscriptions of this phase until ``window`` are in flight."""
        self._pump_queued = False
        progress = self._progress()
        while self.next_id < self.n and self.next_id - progress < self.window:
            self._start(self.next_id)
            self.next_id += 1
        self.driver.flush()
        if progress >= self.n and self.phase_done is not None and not self.phase_done.done():
            self.phase_done.set_result(None)

    def phase(
        self, start: Callable[[int], object], goal: int, timeout: float
    ) -> tuple[float, float, int]:
        """Run one phase to completion: (wall seconds, CPU seconds, subscriptions done)."""
        self._start = start
        self.goal = goal
        self.done_count = 0
        self.ended = 0
        self.next_id = 0
        self.phase_done = self.loop.create_future()
        t0, c0 = time.perf_counter(), cpu_seconds()
        self._pump()
        last = (0, t0, c0)  # (progress, wall, cpu) when progress last moved
        deadline = t0 + timeout
        while not self.phase_done.done():
            self.settle(0.05)
            now = time.perf_counter()
            if self._progress() != last[0]:
                last = (self._progress(), now, cpu_seconds())
            elif now - last[1] > STALL_SECONDS or now > deadline:
                # A peer lost step with some dialogs (see the scenario header): report
                # what finished, timed up to the last progress, and go on.
                self.stalled += self.n - last[0]
                behind = [i for i in range(self.next_id) if self.active[i] < goal][:1]
                print(
                    f"  phase stalled at {last[0]}/{self.n}; e.g. {self.engine.snapshot(behind[0])}"
                    if behind
                    else f"  phase stalled at {last[0]}/{self.n}",
                    file=sys.stderr,
                )
                return last[1] - t0, last[2] - c0, last[0]
        return time.perf_counter() - t0, cpu_seconds() - c0, self.n

    def settle(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        self.driver.engine = None
        self.driver.cancel()
        self.transport.close()
        self.settle(0)
        self.loop.close()


def run_engine(n: int, window: int, measure_rss: bool, profile: bool, idle_wait: float) -> Run:
    uas = SippProcess(
        UAS_SCENARIO,
        calls=n,
        keys={"expires": 3600},
        trace_msg=False,
        recv_timeout_ms=600_000,
    ).start()
    bench = Bench(n, window, uas.port)
    proc = psutil.Process()
    timeout = max(60.0, n / 100)
    try:
        gc.collect()
        rss0 = proc.memory_info().rss
        t_sub, _, subscribed = bench.phase(
            lambda i: bench.engine.subscribe(i, bench.record[i], bench.subscriber[i]), 1, timeout
        )
        if measure_rss:
            # Idle means no transaction left: SUBSCRIBE client transactions
            # linger for Timer K (T4).
            idle_by = time.perf_counter() + idle_wait
            while len(bench.engine.table) and time.perf_counter() < idle_by:
                bench.settle(0.25)
        gc.collect()
        rss = (proc.memory_info().rss - rss0) / n if measure_rss else None

        prof = cProfile.Profile() if profile else None
        if prof is not None:
            prof.enable()
        t_notify, cpu_notify, notified = bench.phase(
            bench.engine.refresh, 1 + NOTIFIES_PER_REFRESH, timeout
        )
        if prof is not None:
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
            print(out.getvalue(), file=sys.stderr)

        t_unsub, _, unsubscribed = bench.phase(bench.engine.unsubscribe, 0, timeout)
        notifies = notified * NOTIFIES_PER_REFRESH
        return Run(
            subs_per_s=subscribed / t_sub,
            notify_per_s=notifies / t_notify,
            unsub_per_s=unsubscribed / t_unsub,
            cycles_per_s=n / (n / (subscribed / t_sub) + n / (unsubscribed / t_unsub)),
            cpu_s_per_1k_notify=cpu_notify / notifies * 1000,
            rss_bytes_per_sub=rss,
            failures=bench.failures,
            stalled=bench.stalled,
        )
    finally:
        bench.close()
        uas.stop()
        uas.cleanup()


def run_sipp(n: int, window: int) -> float:
    """SIPp uac_load against SIPp uas_load, ``window`` calls in flight: cycles per second."""
    uas = SippProcess("uas_load", calls=n, trace_msg=False, recv_timeout_ms=10_000).start()
    try:
        run = run_sipp_uac(
            "uac_load", uas, n, window, inf_rows=[(f"rec{i}", f"sub{i}") for i in range(n)]
        )
        uas.wait(10)
        if run.ok != n or run.retransmissions:
            print(f"  sipp baseline: {run.ok}/{n} calls ok, {run.retransmissions} retransmissions")
        return run.rate
    finally:
        uas.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--subs", type=int, default=10_000, help="subscriptions (default 10000)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions (median reported)")
    ap.add_argument("--window", type=int, default=500, help="subscriptions in flight")
    ap.add_argument(
        "--idle-wait",
        type=float,
        default=40.0,
        help="seconds to wait at most for the transactions to end before the RSS figure",
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 500 subscriptions, once, no idle wait"
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the NOTIFY phase")
    args = ap.parse_args()
    if args.quick:
        args.subs, args.repeat, args.idle_wait = 500, 1, 0.3
    logging.basicConfig(level=logging.WARNING)

    n = args.subs
    print(f"engine bench: {n} subscriptions, window {args.window}, {args.repeat} repetition(s)")
    runs: list[Run] = []
    sipp: list[float] = []
    for rep in range(args.repeat):
        run = run_engine(
            n,
            args.window,
            measure_rss=rep == 0,
            profile=args.profile and rep == 0,
            idle_wait=args.idle_wait,
        )
        runs.append(run)
        sipp.append(run_sipp(n, args.window))
        print(
            f"  rep {rep + 1}: subscribe {run.subs_per_s:8.0f}/s  "
            f"notify {run.notify_per_s:8.0f}/s  unsubscribe {run.unsub_per_s:8.0f}/s  "
            f"cycles {run.cycles_per_s:7.0f}/s  sipp cycles {sipp[-1]:7.0f}/s  "
            f"cpu/1k notify {run.cpu_s_per_1k_notify * 1000:6.1f} ms  "
            f"failures {run.failures}  stalled {run.stalled}"
        )

    def med(values: list[float]) -> float:
        return statistics.median(values)

    subs_per_s = med([r.subs_per_s for r in runs])
    notify_per_s = med([r.notify_per_s for r in runs])
    cycles = med([r.cycles_per_s for r in runs])
    sipp_rate = med(sipp)
    cpu_1k = med([r.cpu_s_per_1k_notify for r in runs])
    rss = runs[0].rss_bytes_per_sub or 0.0
    ratio = cycles / sipp_rate if sipp_rate else 0.0
    print(f"subscriptions established: {subs_per_s:.0f}/s (subscribe -> first active Status)")
    print(
        f"NOTIFYs handled:           {notify_per_s:.0f}/s in established dialogs "
        f"(CPU {cpu_1k:.3f} s per 1000, i.e. {1 / cpu_1k * 1000:.0f}/s of one core)"
    )
    print(f"engine cycles:             {cycles:.0f}/s (subscribe + unsubscribe)")
    print(f"SIPp-vs-SIPp cycles:       {sipp_rate:.0f}/s  -> ratio {ratio:.2f} (goal >= 0.5)")
    print(f"RSS per idle subscription: {rss:.0f} bytes (goal <= 1024)")
    print(
        json.dumps(
            {
                "subs_per_s": round(subs_per_s, 1),
                "notify_per_s": round(notify_per_s, 1),
                "sipp_subs_per_s": round(sipp_rate, 1),
                "ratio_vs_sipp": round(ratio, 3),
                "rss_bytes_per_sub": round(rss, 1),
                "engine_cycles_per_s": round(cycles, 1),
                "cpu_s_per_1k_notify": round(cpu_1k, 4),
                "subs": n,
                "repeat": args.repeat,
                "failures": sum(r.failures for r in runs),
                "stalled": sum(r.stalled for r in runs),
            }
        )
    )


if __name__ == "__main__":
    main()
