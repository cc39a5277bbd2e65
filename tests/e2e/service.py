"""The real ``presence-b2b serve`` as a subprocess, for end-to-end tests.

`ServiceProcess` writes a TOML config into a private temp dir (control socket
there, a block of free consecutive SIP ports on 127.0.0.1, short SIP timers, no
metrics endpoint unless asked), starts the service, and waits until ``ctl
stats`` reports every shard up. Its stderr goes to a file, so a failing test
can print what the service said; `kill()` at teardown makes sure nothing is
left running whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from presence_b2b.ipc.client import QsaError, admin
from presence_b2b.server.routing import shard_of

from presence_b2b.toml_writer import toml_tables
from tests.peers.ports import LOOPBACK, udp_port_in_use

T = TypeVar("T")

# Below Linux's ephemeral range (32768-60999), where SIPp's and the kernel's own
# port choices live, so a reserved block does not collide with them.
PORT_RANGE = (20000, 32000)

FAST = {
    "presence_b2b": {
        "wait_for_term_notify": 2,
        "on_error_retry_time": 1,
        "min_resubscribe_time": 1,
        "resubscribe_delta": 2,
    },
    "sip": {"t1": 0.1, "t2": 0.4, "t4": 0.5},
}
"""Short SIP timers and B2B waits, so every step of a test takes well under a second."""


def free_port_block(count: int, attempts: int = 200) -> int:
    """The first of ``count`` consecutive UDP ports on 127.0.0.1 that are all free now."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        if not any(udp_port_in_use(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free UDP ports found")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def cli_command() -> list[str]:
    """How to run the CLI: the venv's entry point when there is one, else ``-m``."""
    script = Path(sys.executable).with_name("presence-b2b")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "presence_b2b.cli"]


class ServiceProcess:
    """One ``presence-b2b serve`` with its own config, socket and SIP port block.

    ``config`` entries are merged over the fast test defaults table by table;
    ``env`` over the test's environment, where None removes a variable.
    """

    def __init__(
        self,
        *,
        shards: int = 2,
        config: Mapping[str, Mapping[str, object]] | None = None,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.shards = shards
        self.workdir = Path(tempfile.mkdtemp(prefix="presence-b2b-e2e-"))
        self.control_socket = str(self.workdir / "run" / "qsa.sock")
        self.sip_port = free_port_block(shards)
        tables: dict[str, dict[str, object]] = {
            "presence_b2b": dict(FAST["presence_b2b"]),
            "sip": {"listen": LOOPBACK, "port": self.sip_port, **FAST["sip"]},
            "server": {"shards": shards, "control_socket": self.control_socket},
            "metrics": {"listen": ""},
            # Each service its own dialog store, so no test resumes another's dialogs.
            "store": {"url": f"sqlite:///{self.workdir}/dialogs.db"},
        }
        for name, table in (config or {}).items():
            tables.setdefault(name, {}).update(table)
        self.tables = tables
        self.config_path = self.workdir / "presence-b2b.toml"
        self.config_path.write_text(toml_tables(tables))
        self.stderr_path = self.workdir / "stderr.log"
        merged: dict[str, str | None] = {**os.environ, **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ life

    @property
    def wait_for_term_notify(self) -> float:
        return float(self.tables["presence_b2b"].get("wait_for_term_notify", 30))  # type: ignore[arg-type]

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def shard_port(self, index: int) -> int:
        return self.sip_port + index

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        """Start serving and return once every shard reports up."""
        cmd = [*cli_command(), "serve", "--config", str(self.config_path), *self.extra_args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # a Ctrl-C of the test run does not reach it
            )
        self.wait_all_shards_up(timeout)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any] | None:
        """``ctl stats`` data, or None while the control socket does not answer."""
        reply = self.admin("stats", timeout=3.0)
        return reply if isinstance(reply, dict) else None

    def wait_all_shards_up(self, timeout: float = 20.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            if not self.running():
                raise AssertionError(
                    f"presence-b2b serve exited with {self.proc and self.proc.returncode}\n"
                    + self.stderr()
                )
            stats = self.stats()
            if stats and all(s.get("up") for s in stats["shards"]):
                return stats
            return None

        return wait_for("every shard up in ctl stats", probe, timeout)

    def admin(self, command: str, *, timeout: float = 5.0, **args: str) -> Any:
        """An admin command's data in-process; None if the service is unreachable."""
        try:
            reply = asyncio.run(admin(self.control_socket, command, timeout=timeout, **args))
        except (QsaError, OSError):
            return None
        if not reply.ok:
            raise AssertionError(f"ctl {command} {args} failed: {reply.error}")
        return reply.data

    def ctl(self, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        """``presence-b2b ctl ARGS`` against this service, as an operator runs it."""
        return subprocess.run(
            [*cli_command(), "ctl", "--control-socket", self.control_socket, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def shard_pids(self) -> dict[int, int]:
        stats = self.stats()
        assert stats is not None, "service does not answer ctl stats"
        return {s["index"]: s["pid"] for s in stats["shards"]}

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then wait; returns the exit code (AssertionError if it hangs)."""
        assert self.proc is not None, "not started"
        if timeout is None:
            timeout = self.wait_for_term_notify + 10.0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"presence-b2b serve still running {timeout:g} s after SIGTERM\n" + self.stderr()
            ) from None

    def kill(self) -> None:
        """SIGKILL the supervisor's whole process group (its shards die with it)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        else:
            # The shards have a parent-death signal, but make sure of it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<ServiceProcess pid={pid} sip={self.sip_port}+{self.shards} in {self.workdir}>"

    # ------------------------------------------------------------------ routing

    def pair_on_shard(self, shard: int, record: str, subscriber_prefix: str) -> str:
        """A subscriber URI that makes (record, subscriber) land on ``shard``."""
        for n in range(10_000):
            subscriber = f"sip:{subscriber_prefix}{n}@example.com"
            if shard_of(record, subscriber, self.shards) == shard:
                return subscriber
        raise RuntimeError(f"no subscriber found for shard {shard}")
