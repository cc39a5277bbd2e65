"""The SIPp-vs-SIPp ceiling: uac_load.xml against uas_load.xml on 127.0.0.1.

Benchmarks report the engine's rate as a ratio of what two SIPp processes reach on
the same machine in the same run, so a slower or busier machine does not read as
a regression.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tests.peers.sipp import SippProcess


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one load run; `rate` is completed calls per wall-clock second."""

    offered_rate: float
    calls: int
    successful: int
    failed: int
    seconds: float
    retransmissions: int

    @property
    def rate(self) -> float:
        """Successful subscribe-NOTIFY-unsubscribe cycles per second."""
        return self.successful / self.seconds if self.seconds > 0 else 0.0

    @property
    def clean(self) -> bool:
        """True when every call succeeded without a single retransmission."""
        return self.failed == 0 and self.retransmissions == 0 and self.successful == self.calls


def _screen_counter(screen: str, label: str) -> int:
    """Cumulative value of a counter row in SIPp's final screen ("Failed call | a | b")."""
    rows = re.findall(rf"^\s*{re.escape(label)}\s*\|[^|]*\|\s*(\d+)", screen, re.M)
    return int(rows[-1]) if rows else 0


def _retransmissions(screen: str) -> int:
    """Sum of the Retrans column of the last scenario screen (0 when absent)."""
    start = screen.rfind("Messages  Retrans")
    if start < 0:
        return 0
    total = 0
    for line in screen[start:].splitlines()[1:]:
        row = re.match(r"\s*\S+\s+(?:-+>|<-+)\s+(\d+)\s+(\d+)", line)
        if row is None:
            if line.startswith("---"):
                break
            continue
        total += int(row.group(2))
    return total


def run_sipp_ceiling(rate: float, calls: int, timeout: float = 120.0) -> LoadResult:
    """Offer `calls` subscription cycles at `rate`/s from a SIPp UAC to a SIPp UAS."""
    uas = SippProcess("uas_load", calls=calls, trace_msg=False, recv_timeout_ms=5000).start()
    uac = SippProcess(
        "uac_load",
        role="uac",
        remote_port=uas.port,
        calls=calls,
        rate=rate,
        trace_msg=False,
        recv_timeout_ms=5000,
        max_open_calls=max(1000, int(rate * 5)),
        inf_rows=[(f"rec{i}", f"sub{i}") for i in range(min(calls, 10_000))],
    )
    try:
        start = time.monotonic()
        uac.start()
        uac.wait(timeout)
        seconds = time.monotonic() - start
        uas.wait(timeout)
        screen = uac.screen_log()
        return LoadResult(
            offered_rate=rate,
            calls=calls,
            successful=_screen_counter(screen, "Successful call"),
            failed=_screen_counter(screen, "Failed call"),
            seconds=seconds,
            retransmissions=_retransmissions(screen),
        )
    finally:
        uac.cleanup()
        uas.cleanup()
