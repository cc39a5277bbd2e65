"""bench/e2e.py and bench/capacity.py run end to end and end with their JSON report line.

Only the shape of the report is checked: no figure is compared with a goal, so a
slow or busy machine cannot fail these tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.sipp import sipp_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def last_json_line(script: str, timeout: float) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(report, dict)
    return report


@pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed")
def test_e2e_bench_quick_run_ends_with_one_json_line_of_figures() -> None:
    keys = {
        "subs_per_s",
        "notify_per_s",
        "sipp_subs_per_s",
        "ratio_vs_sipp",
        "latency_p99_ms",
        "shards",
    }
    report = last_json_line("e2e.py", timeout=120)
    assert report.keys() >= keys
    assert all(isinstance(report[k], int | float) for k in keys)


def test_capacity_bench_quick_run_ends_with_one_json_line_of_figures() -> None:
    keys = {"subscriptions", "rss_bytes_per_sub", "establish_s", "timer_lag_p99_ms"}
    report = last_json_line("capacity.py", timeout=120)
    assert report.keys() >= keys
    assert all(isinstance(report[k], int | float) for k in keys)
    assert report["subscriptions"] == 2000  # the stub answers every SUBSCRIBE
