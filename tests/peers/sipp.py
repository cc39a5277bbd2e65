"""Run SIPp scenarios as real SIP peers on 127.0.0.1.

`SippProcess` wraps one `sipp` process: the command line every test needs
(loopback only, bounded logs, a big socket buffer, traces in a private temp dir),
start/wait/stop, and readable failure output built from SIPp's own logs, so a
failing integration test shows *why* the peer was unhappy.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from tests.peers.ports import LOOPBACK, free_udp_port, start_with_port_retries, wait_udp_bound

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

Role = Literal["uas", "uac"]


def sipp_binary() -> str | None:
    """Path of the `sipp` executable, or None when sip-tester is not installed."""
    return shutil.which("sipp")


class SippExit(enum.IntEnum):
    """SIPp's process exit codes (see `man sipp`)."""

    ALL_CALLS_OK = 0
    SOME_CALLS_FAILED = 1
    INTERNAL_STOP = 97  # stopped by an internal command or a signal
    NO_CALLS = 99  # normal exit without any call processed
    BIND_ERROR = 254  # -2: could not bind the socket
    FATAL = 255  # -1: fatal error (bad scenario, bad option...)

    @classmethod
    def describe(cls, code: int | None) -> str:
        """Human text for an exit code, including ones SIPp does not document."""
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by signal {-code}"
        try:
            return f"{code} ({cls(code).name})"
        except ValueError:
            return f"{code} (unknown exit code)"


class SippError(AssertionError):
    """A SIPp peer failed, did not finish in time, or could not start.

    Subclasses AssertionError so pytest shows it as a plain test failure, with the
    report (error log, <log> lines, message tail) as the message.
    """


@dataclass(frozen=True)
class ScenarioDefaults:
    """What a scenario needs beyond its file: keys, call count, extra flags."""

    keys: Mapping[str, str] = field(default_factory=dict)
    calls: int = 1
    args: tuple[str, ...] = ()


_COMMON_UAC_KEYS = {
    "record": "presentity",
    "subscriber": "watcher",
    "expires": "4",
    "note": "online",
}

# Defaults for each shipped scenario; keys given by a test override these. Every
# [key] a scenario uses must be set, or SIPp refuses the scenario.
SCENARIOS: dict[str, ScenarioDefaults] = {
    "uas_happy": ScenarioDefaults({"expires": "60", "note": "online"}),
    "uas_basic": ScenarioDefaults({"expires": "60", "note": "online"}),
    "uas_notify_before_200": ScenarioDefaults({"expires": "60", "note": "online"}),
    # -nr: see the scenario header (identical 200s would loop otherwise).
    "uas_notify_retransmit": ScenarioDefaults({"expires": "60", "note": "online"}, args=("-nr",)),
    "uas_481_on_refresh": ScenarioDefaults({"expires": "60", "note": "online"}, calls=2),
    # -deadcall_wait 0: a retry on the same Call-ID must start a new SIPp call.
    "uas_423": ScenarioDefaults(
        {"min_expires": "120", "note": "online"}, calls=2, args=("-deadcall_wait", "0")
    ),
    "uas_terminated": ScenarioDefaults(
        {"expires": "60", "note": "online", "reason": "deactivated", "retry_after": "none"}
    ),
    "uas_silent": ScenarioDefaults({"hold_ms": "2000"}),
    "uas_302": ScenarioDefaults({"redirect_user": "other"}),
    "uas_unsub_no_term_notify": ScenarioDefaults({"expires": "60", "note": "online"}),
    "uas_load": ScenarioDefaults({"expires": "60"}),
    # Digest auth as a presence server (realm presence.test); username/password are
    # what verifyauth checks MD5 answers against.
    "uas_auth_407_sha256": ScenarioDefaults({"expires": "60", "note": "online"}),
    "uas_auth_double_challenge": ScenarioDefaults({"expires": "60", "note": "online"}),
    "uas_auth_stale": ScenarioDefaults(
        {"expires": "60", "note": "online", "username": "watcher", "password": "secret"}
    ),
    "uas_auth_refresh_nonce_reuse": ScenarioDefaults(
        {"expires": "60", "note": "online", "username": "watcher", "password": "secret"}
    ),
    # Other event packages and resource lists (RFC 4235, RFC 4662).
    "uas_dialog_info": ScenarioDefaults({"expires": "60"}),
    "uas_rlmi": ScenarioDefaults({"expires": "60"}),
    "uas_message_summary": ScenarioDefaults({"expires": "60"}),
    "uas_503": ScenarioDefaults({"retry_after": "30"}),
    "uac_load": ScenarioDefaults({"expires": "60"}),
    "check_uac_happy": ScenarioDefaults(_COMMON_UAC_KEYS),
    "check_uac_basic": ScenarioDefaults({**_COMMON_UAC_KEYS, "event": "presence"}),
    "check_uac_notify_before_200": ScenarioDefaults(_COMMON_UAC_KEYS),
    "check_uac_481": ScenarioDefaults(_COMMON_UAC_KEYS, calls=2, args=("-l", "1")),
    "check_uac_423_same_callid": ScenarioDefaults({**_COMMON_UAC_KEYS, "short_expires": "60"}),
    "check_uac_423_new_callid": ScenarioDefaults(
        {**_COMMON_UAC_KEYS, "short_expires": "60", "retry_expires": "120"},
        calls=2,
        args=("-l", "1"),
    ),
    "check_uac_terminated": ScenarioDefaults(
        {**_COMMON_UAC_KEYS, "expect_state": "terminated;reason=deactivated"}
    ),
    "check_uac_silent": ScenarioDefaults(_COMMON_UAC_KEYS),
    "check_uac_302": ScenarioDefaults(_COMMON_UAC_KEYS),
    "check_uac_unsub_no_term_notify": ScenarioDefaults(_COMMON_UAC_KEYS),
    "check_uac_kamailio": ScenarioDefaults({**_COMMON_UAC_KEYS, "expires": "30"}),
    "publish": ScenarioDefaults(
        {"user": "presentity", "basic": "open", "note": "online", "expires": "60"}
    ),
    "unpublish": ScenarioDefaults({"user": "presentity"}),
}


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """Resolve a shipped scenario name ("uas_happy") or a path to an XML file."""
    path = Path(scenario)
    if path.suffix == ".xml" and path.exists():
        return path.resolve()
    candidate = SCENARIO_DIR / f"{path.stem}.xml"
    if candidate.exists():
        return candidate
    raise FileNotFoundError(f"no SIPp scenario {scenario!r} (looked in {SCENARIO_DIR})")


# ------------------------------------------------------------------ message log

_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)
_DIRECTION = re.compile(r"^\S+ message (sent|received)\b", re.I)


@dataclass(frozen=True)
class LoggedMessage:
    """One SIP message from SIPp's -trace_msg log, as SIPp saw it."""

    time: datetime
    direction: Literal["sent", "received"]
    text: str

    @property
    def first_line(self) -> str:
        """Request line or status line."""
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        """True for requests, False for responses."""
        return not self.first_line.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        """Request method, or the CSeq method of a response."""
        if self.is_request:
            return self.first_line.split(" ", 1)[0]
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq else ""

    @property
    def status(self) -> int | None:
        """Status code of a response, None for a request."""
        if self.is_request:
            return None
        parts = self.first_line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def call_id(self) -> str:
        """Call-ID value (long or compact header name)."""
        return self.header("Call-ID") or self.header("i")

    def header(self, name: str) -> str:
        """Value of the first header called `name` (case-insensitive), '' if absent."""
        head = self.text.split("\n\n", 1)[0]
        wanted = name.lower()
        for line in head.split("\n")[1:]:
            hname, sep, value = line.partition(":")
            if sep and hname.strip().lower() == wanted:
                return value.strip()
        return ""

    @property
    def body(self) -> str:
        """Message body ('' when there is none)."""
        parts = self.text.split("\n\n", 1)
        return parts[1] if len(parts) == 2 else ""


def parse_messages_log(text: str) -> list[LoggedMessage]:
    """Split a -trace_msg log into messages (CRLFs folded to LF)."""
    text = text.replace("\r\n", "\n")
    out: list[LoggedMessage] = []
    marks = list(_SEPARATOR.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        chunk = text[mark.end() : end].strip("\n")
        head, _, rest = chunk.partition("\n")
        direction = _DIRECTION.match(head)
        if not direction or not rest.strip():
            continue  # e.g. "(retrans) lost" notes without a message
        when = datetime.strptime(mark.group(1), "%Y-%m-%d %H:%M:%S.%f")
        out.append(
            LoggedMessage(
                time=when,
                direction="sent" if direction.group(1).lower() == "sent" else "received",
                text=rest.strip("\n") + "\n",
            )
        )
    return out


def _matches(msg: LoggedMessage, what: str | int, cseq_method: str | None) -> bool:
    if isinstance(what, int) or str(what).isdigit():
        if msg.status != int(what):
            return False
        return cseq_method is None or msg.method == cseq_method.upper()
    return msg.is_request and msg.method == str(what).upper()


# ------------------------------------------------------------------ process


class SippProcess:
    """One SIPp instance bound to 127.0.0.1, as a server (UAS) or a client (UAC).

    UAS: `sipp -sf FILE -i 127.0.0.1 -p PORT -m CALLS ...`
    UAC: the same plus `127.0.0.1:REMOTE_PORT` (and `-r`/`-l` if given).
    Every run gets its own temp dir with the message, error, <log> and screen files,
    so a failing test can print exactly what the peer saw.
    """

    def __init__(
        self,
        scenario: str | os.PathLike[str],
        *,
        role: Role = "uas",
        port: int | None = None,
        remote_port: int | None = None,
        calls: int | None = None,
        keys: Mapping[str, object] | None = None,
        inf_rows: Iterable[Sequence[str]] | None = None,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        max_open_calls: int | None = None,
        recv_timeout_ms: int = 10_000,
        trace_msg: bool = True,
        max_log_size: int = 20_000_000,
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        binary = sipp_binary()
        if binary is None:
            raise SippError("sipp is not installed (scripts/install-peers installs it)")
        if role == "uac" and remote_port is None:
            raise ValueError("a UAC needs remote_port")
        self.scenario = scenario_path(scenario)
        defaults = SCENARIOS.get(self.scenario.stem, ScenarioDefaults())
        self.role: Role = role
        self.port = port if port is not None else free_udp_port()
        self._port_chosen_here = port is None
        self.remote_port = remote_port
        self.calls = calls if calls is not None else defaults.calls
        given = {k: str(v) for k, v in (keys or {}).items()}
        self.keys: dict[str, str] = {**defaults.keys, **given}
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"sipp-{self.scenario.stem}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        stem = self.scenario.stem
        self.messages_file = self.workdir / f"{stem}.messages.log"
        self.errors_file = self.workdir / f"{stem}.errors.log"
        self.logs_file = self.workdir / f"{stem}.logs.log"
        self.screen_file = self.workdir / f"{stem}.screen.log"
        self.stdout_file = self.workdir / f"{stem}.stdout.log"

        args = [
            binary,
            "-sf", str(self.scenario),
            "-i", LOOPBACK,
            "-bind_local",
            "-p", str(self.port),
            "-m", str(self.calls),
            "-nostdin",
            "-buff_size", "4194304",
            "-recv_timeout", str(recv_timeout_ms),
            "-max_log_size", str(max_log_size),
            "-trace_err", "-error_file", str(self.errors_file),
            "-trace_logs", "-log_file", str(self.logs_file),
            "-trace_screen", "-screen_file", str(self.screen_file),
        ]  # fmt: skip
        if trace_msg:
            args += ["-trace_msg", "-message_file", str(self.messages_file)]
        for name, value in self.keys.items():
            args += ["-key", name, value]
        if inf_rows is not None:
            inf = self.workdir / "inject.csv"
            lines = ["SEQUENTIAL", *(";".join(row) + ";" for row in inf_rows)]
            inf.write_text("\n".join(lines) + "\n")
            args += ["-inf", str(inf)]
        if rate is not None:
            args += ["-r", f"{rate:g}"]
        if rate_period_ms is not None:
            args += ["-rp", str(rate_period_ms)]
        if max_open_calls is not None:
            args += ["-l", str(max_open_calls)]
        args += [*defaults.args, *extra_args]
        if role == "uac":
            args.append(f"{LOOPBACK}:{remote_port}")
        self.args = args
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: object = None
        self.started_at: float | None = None
        self.ended_at: float | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self, ready_timeout: float = 5.0) -> Self:
        """Start SIPp in the background; return once its UDP socket is bound.

        Waiting for the bind means a test may send to `.port` right away.
        """
        if self._proc is not None:
            raise RuntimeError("already started")
        move_to = self._move_to if self._port_chosen_here else None
        if not start_with_port_retries(lambda: self._spawn(ready_timeout), move_to):
            raise SippError(f"SIPp could not bind 127.0.0.1:{self.port}\n" + self.report())
        return self

    def _spawn(self, ready_timeout: float) -> bool:
        """Run SIPp; True once it holds its port, False if it exited for a taken port."""
        with open(self.stdout_file, "wb") as out:
            self._proc = subprocess.Popen(
                self.args,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a signal to the test runner does not hit it
            )
        self.started_at = time.monotonic()
        args = list(self.args)
        tcp = "-t" in args and args[args.index("-t") + 1].startswith("t")
        # -t t1/tn: SIPp listens on TCP; a later -i ::1 (SIPp takes the last): IPv6.
        last_ip = args[len(args) - 1 - args[::-1].index("-i") + 1]
        kind = ("tcp" if tcp else "udp") + ("6" if ":" in last_ip else "4")
        if wait_udp_bound(self._proc.pid, self.port, ready_timeout, alive=self.running, kind=kind):
            return True
        if self.returncode in (SippExit.ALL_CALLS_OK, SippExit.SOME_CALLS_FAILED):
            # A short UAC run against a fast peer can end before its port was seen
            # bound; it did run, and its results say how.
            return True
        if self.returncode == SippExit.BIND_ERROR:
            return False
        self.stop()
        raise SippError(f"SIPp did not bind 127.0.0.1:{self.port}\n" + self.report())

    def _move_to(self, port: int) -> None:
        self.port = port
        self.args[self.args.index("-p") + 1] = str(port)

    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id once started."""
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """Exit code once finished (negative: killed by that signal)."""
        return self._proc.poll() if self._proc else None

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for SIPp to exit and return its exit code (see SippExit).

        On timeout the process is stopped and SippError raised with the report:
        a peer still waiting is itself the finding ("never got the unsubscribe").
        """
        if self._proc is None:
            raise RuntimeError("not started")
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise SippError(
                f"{self.scenario.name} still running after {timeout:g} s\n" + self.report()
            ) from None
        self.ended_at = self.ended_at or time.monotonic()
        return code

    def expect_success(self, timeout: float = 30.0) -> None:
        """Wait and raise SippError with the report unless every call succeeded."""
        code = self.wait(timeout)
        if code != SippExit.ALL_CALLS_OK:
            raise SippError(self.report())

    def stop(self, grace: float = 2.0) -> int | None:
        """Stop SIPp: SIGUSR1 (SIPp's graceful quit), then SIGKILL after `grace` s."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGUSR1)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            except ProcessLookupError:
                pass
        self.ended_at = self.ended_at or time.monotonic()
        return proc.returncode

    def cleanup(self) -> None:
        """Stop the process and delete the temp dir it owns."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs ----------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def messages_log(self) -> str:
        """Raw -trace_msg log (SIPp writes it as it goes)."""
        return self._read(self.messages_file)

    def errors_log(self) -> str:
        """Raw -trace_err log: unexpected messages, timeouts, failed checks."""
        return self._read(self.errors_file)

    def logs_log(self) -> str:
        """Lines written by the scenario's <log> actions ("CHECK FAILED: ...")."""
        return self._read(self.logs_file)

    def screen_log(self) -> str:
        """Final statistics screen, written when SIPp exits."""
        return self._read(self.screen_file)

    def stdout_log(self) -> str:
        """SIPp's stdout/stderr (fatal start-up errors land here)."""
        return self._read(self.stdout_file)

    def messages(self) -> list[LoggedMessage]:
        """Parsed message log, in the order SIPp logged it."""
        return parse_messages_log(self.messages_log())

    def received(self, what: str | int, cseq_method: str | None = None) -> list[LoggedMessage]:
        """Received requests of method `what`, or responses with status `what`."""
        return [
            m
            for m in self.messages()
            if m.direction == "received" and _matches(m, what, cseq_method)
        ]

    def sent(self, what: str | int, cseq_method: str | None = None) -> list[LoggedMessage]:
        """Sent requests of method `what`, or responses with status `what`."""
        return [
            m for m in self.messages() if m.direction == "sent" and _matches(m, what, cseq_method)
        ]

    def count_received(self, what: str | int, cseq_method: str | None = None) -> int:
        """How many requests (by method) or responses (by code) came in, copies included."""
        return len(self.received(what, cseq_method))

    def count_sent(self, what: str | int, cseq_method: str | None = None) -> int:
        """How many requests (by method) or responses (by code) SIPp sent."""
        return len(self.sent(what, cseq_method))

    def report(self, tail_lines: int = 60) -> str:
        """Readable failure report: exit code, checks that failed, errors, last messages."""

        def tail(text: str, n: int) -> str:
            lines = text.rstrip("\n").split("\n")
            return "\n".join(lines[-n:]) if text.strip() else "(empty)"

        parts = [
            f"SIPp {self.scenario.name} as {self.role} on 127.0.0.1:{self.port}"
            + (f" -> 127.0.0.1:{self.remote_port}" if self.remote_port else "")
            + f": exit {SippExit.describe(self.returncode)}",
            "command: " + " ".join(self.args),
        ]
        checks = [ln for ln in self.logs_log().split("\n") if "CHECK FAILED" in ln]
        if checks:
            parts.append("failed checks:\n" + "\n".join(checks))
        parts.append("error log (tail):\n" + tail(self.errors_log(), tail_lines // 2))
        stdout = self.stdout_log()
        if self.returncode not in (None, 0, 1) and stdout.strip():
            parts.append("stdout (tail):\n" + tail(stdout, 15))
        parts.append("message log (tail):\n" + tail(self.messages_log(), tail_lines))
        return "\n\n".join(parts)

    def __repr__(self) -> str:
        return f"<SippProcess {self.scenario.name} {self.role} port={self.port} pid={self.pid}>"


def run_pair(
    uas_scenario: str,
    uac_scenario: str,
    *,
    uas_keys: Mapping[str, object] | None = None,
    uac_keys: Mapping[str, object] | None = None,
    uas_calls: int | None = None,
    uac_calls: int | None = None,
    timeout: float = 30.0,
) -> tuple[SippProcess, SippProcess]:
    """Run a SIPp UAS and a SIPp UAC against it; return both once finished.

    Used to prove a UAS scenario right before it is used against the engine.
    Raises SippError (with both reports) unless both exit 0.
    """
    uas = SippProcess(uas_scenario, role="uas", keys=uas_keys, calls=uas_calls).start()
    uac = SippProcess(
        uac_scenario, role="uac", remote_port=uas.port, keys=uac_keys, calls=uac_calls
    )
    try:
        uac.start()
        uac_code = uac.wait(timeout)
        uas_code = uas.wait(timeout)
    finally:
        uac.stop()
        uas.stop()
    if uac_code != 0 or uas_code != 0:
        raise SippError("UAS:\n" + uas.report() + "\n\n======\nUAC:\n" + uac.report())
    return uas, uac
