"""The adaptive set-up pace on a virtual clock: the configured rate is a ceiling,
congestion cuts it once per window, quiet time grows it back."""

from __future__ import annotations

import pytest
from presence_b2b.shard.pace import DECREASE, RAMP_SECONDS, WINDOW, AdaptivePace


def test_a_quiet_shard_runs_at_the_ceiling() -> None:
    pace = AdaptivePace(500)
    assert pace.current(0.0) == 500
    assert pace.current(100.0) == 500


def test_a_congestion_signal_cuts_the_pace() -> None:
    pace = AdaptivePace(500)
    assert pace.congested(1.0)
    assert pace.current(1.0) == pytest.approx(500 * DECREASE)


def test_signals_within_one_window_cut_once() -> None:
    pace = AdaptivePace(500)
    pace.congested(1.0)
    assert not pace.congested(1.0 + WINDOW / 2)
    assert pace.current(1.0 + WINDOW / 2) == pytest.approx(500 * DECREASE)
    assert pace.cuts == 1


def test_signals_in_successive_windows_keep_cutting() -> None:
    pace = AdaptivePace(500)
    for k in range(3):
        pace.congested(1.0 + k * WINDOW)
    assert pace.current(1.0 + 2 * WINDOW) == pytest.approx(500 * DECREASE**3)


def test_the_pace_never_falls_below_the_floor() -> None:
    pace = AdaptivePace(500)
    for k in range(100):
        pace.congested(k * WINDOW)
    assert pace.current(100 * WINDOW) == pace.floor > 0


def test_quiet_time_after_a_cut_grows_the_pace_back_to_the_ceiling() -> None:
    pace = AdaptivePace(500)
    pace.congested(0.0)
    cut = pace.current(0.0)
    assert pace.current(WINDOW) == pytest.approx(cut), "no growth within the window"
    assert pace.current(WINDOW + 2.0) == pytest.approx(cut + 2.0 * 500 / RAMP_SECONDS)
    assert pace.current(WINDOW + RAMP_SECONDS) == 500


def test_a_ceiling_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AdaptivePace(0)
