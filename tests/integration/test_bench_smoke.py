"""bench/engine.py runs end to end and ends with its JSON report line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.sipp import sipp_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "engine.py"
KEYS = {"subs_per_s", "notify_per_s", "sipp_subs_per_s", "ratio_vs_sipp", "rss_bytes_per_sub"}


def test_engine_bench_quick_run_ends_with_one_json_line_of_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    report = json.loads(last)
    assert isinstance(report, dict)
    assert report.keys() >= KEYS
    assert all(isinstance(report[k], int | float) for k in KEYS)
