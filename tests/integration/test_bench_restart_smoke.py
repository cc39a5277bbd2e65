"""bench/restart.py runs end to end: the store's cost with the store off and on,
and a killed service that takes its dialogs back with no new dialog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "restart.py"


def test_restart_bench_quick_run_resumes_every_dialog_without_a_new_one() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=115,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["subs_per_s_store_on"] > 0 and report["notify_per_s_store_on"] > 0
    assert report["restart_restored"] == report["restart_subs"]
    assert report["restart_new_initial_subscribes"] == 0
    assert report["restart_refreshes"] >= report["restart_subs"]
