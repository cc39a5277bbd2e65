"""bench/store.py runs end to end and ends with its JSON report line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "store.py"
KEYS = {"batched_rows_per_s", "single_rows_per_s", "batch_1_ms", "load_all_s"}


def test_store_bench_quick_run_ends_with_one_json_line_of_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "sqlite" in report
    for figures in report.values():
        assert figures.keys() >= KEYS
        assert all(figures[k] > 0 for k in KEYS)
