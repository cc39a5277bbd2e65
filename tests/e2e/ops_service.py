"""The real service for the operations tests: start it, scrape it, stop it.

`OpsService` runs ``presence-b2b serve`` as a subprocess on 127.0.0.1 only:
a private temp dir holds the TOML file, the control socket and the service's
stderr; shard i binds SIP port ``sip_port + i`` from a block found free, and
the metrics endpoint gets a free TCP port. `scrape()` returns the parsed
``/metrics`` page as a `Scrape`, so tests compare figures by family and label.

Everything started here is killed in `close()` (the supervisor's whole process
group, stopped shards included), also when the test failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from presence_b2b.ipc.client import QsaError, admin
from prometheus_client.parser import text_string_to_metric_families

from tests.peers.ports import LOOPBACK, free_udp_port, udp_port_in_use

T = TypeVar("T")

PREFIX = "presence_b2b_"

#: Short SIP and B2B timers: a timeout takes 64 * t1 = 6.4 s, a retry 1 s later.
FAST_TABLES: dict[str, dict[str, object]] = {
    "presence_b2b": {"on_error_retry_time": 1, "wait_for_term_notify": 2},
    "sip": {"t1": 0.1, "t2": 0.4, "t4": 0.5},
}


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Call ``probe`` until it returns something truthy; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(0.1)


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_sip_ports(count: int, attempts: int = 100) -> int:
    """First of ``count`` consecutive free UDP ports on 127.0.0.1 (shard i binds base + i)."""
    for _ in range(attempts):
        base = free_udp_port()
        if base + count <= 65535 and not any(udp_port_in_use(base + i) for i in range(1, count)):
            return base
    raise RuntimeError(f"no {count} consecutive free UDP ports found")


def _toml(tables: Mapping[str, Mapping[str, object]]) -> str:
    """TOML for flat tables of strings, numbers and lists of numbers (json spells them alike)."""
    out: list[str] = []
    for name, table in tables.items():
        out.append(f"[{name}]")
        out.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
        out.append("")
    return "\n".join(out)


class Scrape:
    """One parsed ``/metrics`` page: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample of ``presence_b2b_<name>`` whose labels include ``labels``.

        Without a ``shard`` label this adds up every process: the service-wide figure.
        """
        full = PREFIX + name
        return sum(
            value
            for sample, have, value in self.samples
            if sample == full and all(have.get(k) == v for k, v in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        full = PREFIX + name
        return any(
            sample == full and all(have.get(k) == v for k, v in labels.items())
            for sample, have, _ in self.samples
        )


class OpsService:
    """``presence-b2b serve`` with its own config, SIP ports, control socket and metrics port.

    ``config`` tables are merged over `FAST_TABLES`; ``env`` is added to the
    environment of the service (e.g. NOTIFY_SOCKET for the watchdog test).
    """

    def __init__(
        self,
        *,
        shards: int = 2,
        config: Mapping[str, Mapping[str, object]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.shards = shards
        self.workdir = Path(tempfile.mkdtemp(prefix="presence-b2b-ops-"))
        self.control_socket = str(self.workdir / "qsa.sock")
        self.sip_port = free_sip_ports(shards)
        self.metrics_port = free_tcp_port()
        tables: dict[str, dict[str, object]] = {
            "presence_b2b": dict(FAST_TABLES["presence_b2b"]),
            "sip": {"listen": LOOPBACK, "port": self.sip_port, **FAST_TABLES["sip"]},
            "server": {"shards": shards, "control_socket": self.control_socket},
            "metrics": {"listen": f"{LOOPBACK}:{self.metrics_port}"},
        }
        for name, table in (config or {}).items():
            tables.setdefault(name, {}).update(table)
        self.config_path = self.workdir / "presence-b2b.toml"
        self.config_path.write_text(_toml(tables))
        self.stderr_path = self.workdir / "stderr.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ life

    def start(self, timeout: float = 20.0) -> OpsService:
        """Start serving; return once every shard is up and /metrics answers."""
        cli = Path(sys.executable).with_name("presence-b2b")
        cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "presence_b2b"]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*cmd, "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group, shards included
            )

        def all_up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"presence-b2b serve exited with {self.proc.returncode}\n{self.stderr()}"
                )
            stats = self.stats()
            return stats is not None and all(s["up"] for s in stats["shards"])

        wait_until("shard up on every slot", all_up, timeout)
        wait_until("answer from /metrics", self._try_scrape, timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def close(self) -> None:
        """Kill the supervisor's process group (stopped shards too) and remove the temp dir."""
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ control socket

    def admin(self, command: str, **args: str) -> Any:
        """An admin command's data; None while the control socket does not answer."""
        try:
            reply = asyncio.run(admin(self.control_socket, command, timeout=3.0, **args))
        except (QsaError, OSError):
            return None
        return reply.data if reply.ok else None

    def stats(self) -> dict[str, Any] | None:
        data = self.admin("stats")
        return data if isinstance(data, dict) else None

    def shard_pid(self, index: int) -> int:
        stats = self.stats()
        assert stats is not None, "the service does not answer 'stats'"
        pid: int = stats["shards"][index]["pid"]
        return pid

    # ------------------------------------------------------------------ metrics

    def scrape_text(self) -> str:
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body: bytes = resp.read()
            return body.decode()

    def scrape(self) -> Scrape:
        return Scrape(self.scrape_text())

    def _try_scrape(self) -> bool:
        try:
            self.scrape_text()
        except OSError:
            return False
        return True

    def wait_figure(
        self,
        what: str,
        figure: Callable[[Scrape], float],
        expected: float,
        timeout: float = 20.0,
    ) -> Scrape:
        """Scrape until ``figure(scrape) == expected`` (shards publish every 0.5 s).

        On timeout the AssertionError names ``what``, the last figure scraped
        and the tail of the service's log.
        """
        deadline = time.monotonic() + timeout
        while True:
            scrape = self.scrape()
            got = figure(scrape)
            if got == expected:
                return scrape
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{what}: expected {expected:g}, still {got:g} after {timeout:g} s\n"
                    f"service log (tail):\n{self.stderr()[-4000:]}"
                )
            time.sleep(0.1)
