"""bench/dns_lookups.py runs against the test dnsmasq and ends with its JSON report line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.dns import dnsmasq_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(dnsmasq_binary() is None, reason="dnsmasq is not installed"),
]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dns_lookups.py"


def test_dns_bench_quick_run_reports_latency_rate_and_cpu_per_client() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"aiodns", "adapter"} <= report.keys()
    for figures in report.values():
        assert figures.keys() == {"serial_us", "burst_per_s", "cpu_us"}
        assert all(value > 0 for value in figures.values())
