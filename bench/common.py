"""What the benchmarks share: the service under test, SIPp runs, CPU/RSS, figures, plots.

Everything runs on 127.0.0.1. `Service` is ``presence-b2b serve`` in its own
process group with a private config, control socket, SIP port block and metrics
port; `close()` kills the group whatever happened. SIPp runs go through
`tests.peers.sipp.SippProcess`, so the command line (loopback, -buff_size,
-recv_timeout, -max_log_size) is the one the tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from presence_b2b.ipc.client import QsaError, admin
from prometheus_client.parser import text_string_to_metric_families

from presence_b2b import compiled
from presence_b2b.toml_writer import toml_tables
from tests.peers.load import _retransmissions, _screen_counter
from tests.peers.ports import LOOPBACK, free_udp_port, udp_port_in_use
from tests.peers.sipp import SippProcess

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
METRIC_PREFIX = "presence_b2b_"


# ------------------------------------------------------------------ figures


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def steady_rate(times: Sequence[float], low: float = 0.1, high: float = 0.9) -> float:
    """Events per second between the ``low`` and ``high`` fractions of sorted arrival
    times: the ramp-up at the start and the stragglers at the end left out."""
    n = len(times)
    if n < 10:
        return 0.0
    ts = sorted(times)
    i, j = int(n * low), int(n * high) - 1
    span = ts[j] - ts[i]
    return (j - i) / span if span > 0 else 0.0


def exit_on_sigterm() -> None:
    """SIGTERM (a timeout, a CI cancel) raises SystemExit, so every ``finally`` that
    stops a service or a SIPp process runs; Python's default would skip them."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


CODE_DIRS = ("presence_b2b", "sip", "presence", "shard", "server", "ipc", "metrics")


def code_version() -> str:
    """The commit the service runs from, ``+local`` when its code has uncommitted edits."""
    root = str(Path(__file__).resolve().parent.parent)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", *CODE_DIRS],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+local" if dirty else "")  # fmt: skip


def print_json(report: Mapping[str, Any]) -> None:
    """The report line: one JSON object, last line of the output; it says whether
    the code measured ran compiled (scripts/compile) or as pure Python."""
    print(json.dumps({"compiled": compiled.is_compiled(), **report}), flush=True)


# ------------------------------------------------------------------ processes


def cpu_of(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each live pid (missing ones left out)."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
    return out


def rss_of(pids: Iterable[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out[pid] = psutil.Process(pid).memory_info().rss
    return out


def self_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


class CpuMeter:
    """CPU shares (CPU seconds per wall second) of named processes over an interval,
    plus this process ("client") and what the rest of the machine used ("others":
    other engineers' jobs on a shared box show up here)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._start: tuple[float, dict[str, float], float, float] | None = None

    def _read(self) -> tuple[float, dict[str, float], float, float]:
        cpu = cpu_of(self.pids.values())
        machine = psutil.cpu_times()
        busy = machine.user + machine.system + machine.nice + machine.irq + machine.softirq
        return (
            time.perf_counter(),
            {name: cpu.get(pid, 0.0) for name, pid in self.pids.items()},
            self_cpu(),
            busy,
        )

    def start(self) -> None:
        self._start = self._read()

    def shares(self) -> dict[str, float]:
        """Shares since start(); {} if start() was never called."""
        if self._start is None:
            return {}
        t0, cpu0, me0, busy0 = self._start
        t1, cpu1, me1, busy1 = self._read()
        wall = t1 - t0
        if wall <= 0:
            return {}
        out = {name: (cpu1[name] - cpu0[name]) / wall for name in self.pids}
        out["client"] = (me1 - me0) / wall
        out["others"] = max(0.0, (busy1 - busy0) / wall - sum(out.values()))
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of each named process since start()."""
        if self._start is None:
            return {}
        _, cpu0, _, _ = self._start
        cpu1 = cpu_of(self.pids.values())
        return {name: cpu1.get(pid, cpu0[name]) - cpu0[name] for name, pid in self.pids.items()}


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_sip_ports(count: int, attempts: int = 200) -> int:
    """First of ``count`` consecutive free UDP ports on 127.0.0.1."""
    for _ in range(attempts):
        base = free_udp_port()
        if base + count <= 65535 and not any(udp_port_in_use(base + i) for i in range(1, count)):
            return base
    raise RuntimeError(f"no {count} consecutive free UDP ports found")


class Service:
    """``presence-b2b serve`` on 127.0.0.1 with the built-in defaults unless ``config`` says.

    Shard i binds ``sip_port + i``; ``/metrics`` is on ``metrics_port``.
    """

    def __init__(
        self, *, shards: int, config: Mapping[str, Mapping[str, object]] | None = None
    ) -> None:
        self.shards = shards
        self.workdir = Path(tempfile.mkdtemp(prefix="presence-b2b-bench-"))
        self.control_socket = str(self.workdir / "qsa.sock")
        self.sip_port = free_sip_ports(shards)
        self.metrics_port = free_tcp_port()
        tables: dict[str, dict[str, object]] = {
            "presence_b2b": {},
            # Benchmarks measure the service's own ceilings, not the guards an
            # operator sets: no SUBSCRIBE rate limit and no per-client cap.
            "sip": {"listen": LOOPBACK, "port": self.sip_port, "subscribe_rate": 0},
            "server": {
                "shards": shards,
                "max_subscriptions_per_client": 0,
                "control_socket": self.control_socket,
                "log_level": "warning",
            },
            "metrics": {"listen": f"{LOOPBACK}:{self.metrics_port}"},
            # No dialog store unless a benchmark asks for one (capacity --store).
            "store": {"url": ""},
        }
        for name, table in (config or {}).items():
            tables.setdefault(name, {}).update(table)
        self.config_path = self.workdir / "presence-b2b.toml"
        self.config_path.write_text(toml_tables(tables))
        self.log_path = self.workdir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.shard_pids: list[int] = []

    def start(self, timeout: float = 30.0) -> Service:
        """Start serving; return once every shard is up and /metrics answers."""
        cli = Path(sys.executable).with_name("presence-b2b")
        cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "presence_b2b.cli"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, shards included
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"presence-b2b serve exited:\n{self.log_tail()}")
            stats = self.stats()
            if stats is not None and all(s["up"] for s in stats["shards"]):
                with contextlib.suppress(OSError):
                    self.scrape_text()
                    self.shard_pids = [s["pid"] for s in stats["shards"]]
                    return self
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"presence-b2b serve not up in {timeout:g} s")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def pids(self) -> list[int]:
        """Supervisor first, then the shards."""
        return [self.pid, *self.shard_pids]

    def rss(self) -> int:
        return sum(rss_of(self.pids()).values())

    def stats(self) -> dict[str, Any] | None:
        try:
            reply = asyncio.run(admin(self.control_socket, "stats", timeout=3.0))
        except (QsaError, OSError):
            return None
        return reply.data if reply.ok and isinstance(reply.data, dict) else None

    def scrape_text(self) -> str:
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body: bytes = resp.read()
            return body.decode()

    def scrape(self) -> Scrape:
        return Scrape(self.scrape_text())

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL the supervisor's process group (the shards with it); the
        workdir stays, so ``start`` runs the same service again."""
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)

    def close(self) -> None:
        """Kill the service (see ``kill``) and remove the temp dir."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ metrics


class Scrape:
    """One parsed ``/metrics`` page."""

    def __init__(self, text: str) -> None:
        self.at = time.monotonic()
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        """Sum over every process (shard label) of ``presence_b2b_<name>`` with ``labels``."""
        full = METRIC_PREFIX + name
        return sum(
            v
            for n, have, v in self.samples
            if n == full and all(have.get(k) == w for k, w in labels.items())
        )

    def histogram(self, name: str, **labels: str) -> Histogram:
        """``presence_b2b_<name>`` with ``labels``, summed over shards: cumulative
        counts per upper bound."""
        full = METRIC_PREFIX + name + "_bucket"
        buckets: dict[float, float] = {}
        for n, have, v in self.samples:
            if n == full and all(have.get(k) == w for k, w in labels.items()):
                le = float(have["le"])
                buckets[le] = buckets.get(le, 0.0) + v
        return Histogram(tuple(sorted(buckets.items())))


@dataclass(frozen=True)
class Histogram:
    """Cumulative Prometheus buckets ((upper bound, count), ..., (inf, total))."""

    buckets: tuple[tuple[float, float], ...]

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def above(self, bound: float) -> float:
        """Observations over ``bound``, which must be one of the bucket bounds."""
        return self.count - dict(self.buckets).get(bound, self.count)

    def __sub__(self, older: Histogram) -> Histogram:
        old = dict(older.buckets)
        return Histogram(tuple((le, c - old.get(le, 0.0)) for le, c in self.buckets))

    def quantile(self, q: float) -> float:
        """Prometheus' histogram_quantile: linear inside the bucket; the highest finite
        bound when the rank falls in +Inf; 0.0 with no observations."""
        total = self.count
        if total <= 0:
            return 0.0
        rank = q * total
        lower, below = 0.0, 0.0
        for le, cum in self.buckets:
            if cum >= rank:
                if math.isinf(le):
                    return lower
                inside = cum - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, cum
        return lower


# ------------------------------------------------------------------ SIPp


@dataclass(frozen=True)
class SippRun:
    """A SIPp UAC run: calls that succeeded, wall time from start to exit, retransmissions."""

    calls: int
    ok: int
    seconds: float
    retransmissions: int
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def sipp_seconds(screen: str) -> float | None:
    """Seconds from SIPp's start to its last statistics screen (its own clock: the
    process start-up is not in it), or None when the screen does not say."""
    start = re.findall(r"Start Time\s*\|.*?(\d+\.\d+)\s*$", screen, re.M)
    now = re.findall(r"Current Time\s*\|.*?(\d+\.\d+)\s*$", screen, re.M)
    if not start or not now:
        return None
    seconds = float(now[-1]) - float(start[-1])
    return seconds if seconds > 0 else None


def run_sipp_uac(
    uac_scenario: str | os.PathLike[str],
    uas: SippProcess,
    calls: int,
    window: int,
    *,
    keys: Mapping[str, object] | None = None,
    inf_rows: Sequence[Sequence[str]] | None = None,
    timeout: float | None = None,
) -> SippRun:
    """Run a SIPp UAC against a started ``uas`` with ``window`` calls open at most
    (offered at 30 000/s, above what any pair here can do: the window is the limit)."""
    uac = SippProcess(
        uac_scenario,
        role="uac",
        remote_port=uas.port,
        calls=calls,
        keys=keys,
        rate=30_000,
        max_open_calls=window,
        trace_msg=False,
        recv_timeout_ms=10_000,
        inf_rows=inf_rows,
    )
    try:
        t0 = time.perf_counter()
        uac.start()
        pid = uac.pid
        cpu0 = cpu_of([pid]).get(pid, 0.0) if pid else 0.0
        cpu = cpu0
        proc = None
        with contextlib.suppress(psutil.Error):  # a short run may be over already
            proc = psutil.Process(pid) if pid else None
        wait_for = timeout or max(60.0, calls / 100)
        deadline = t0 + wait_for
        while uac.running() and time.perf_counter() < deadline:
            # CPU read while alive: an exited child's times are gone from /proc.
            with contextlib.suppress(psutil.Error):
                if proc is not None:
                    t = proc.cpu_times()
                    cpu = t.user + t.system
            time.sleep(0.02)
        uac.wait(max(1.0, deadline - time.perf_counter()))
        screen = uac.screen_log()
        seconds = sipp_seconds(screen) or time.perf_counter() - t0
        return SippRun(
            calls=calls,
            ok=_screen_counter(screen, "Successful call"),
            seconds=seconds,
            retransmissions=_retransmissions(screen),
            cpu_s=cpu - cpu0,
        )
    finally:
        uac.cleanup()


# ------------------------------------------------------------------ plots


def pyplot(plot_dir: str | None) -> Any:
    """matplotlib.pyplot on the Agg backend, or None (no --plot, or matplotlib missing)."""
    if not plot_dir:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  --plot: matplotlib is not installed (pip install -e '.[bench]')")
        return None
    Path(plot_dir).mkdir(parents=True, exist_ok=True)
    return plt


def save(plt: Any, fig: Any, plot_dir: str, name: str) -> None:
    path = Path(plot_dir) / name
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"  plot: {path}")


def wait_until(probe: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
