"""Mutated peers never break the engine: the seeded fuzzer, a short run per seed."""

from __future__ import annotations

import pytest
from engine_fuzz import run


@pytest.mark.parametrize("seed", range(6))
def test_mutated_responses_notifies_and_options_leave_no_subscription_stuck(seed: int) -> None:
    stats = run(seed, steps=300)
    assert stats.steps == 300
    assert stats.datagrams > 0 and stats.messages > 0
