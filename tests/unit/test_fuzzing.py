"""Short seeded fuzz runs of every target in CI (bench/fuzz.py runs long ones):
mutated SIP datagrams, NOTIFY bodies with many namespaces, QSA wire messages
and scribbled rings give only the documented errors, within the output bounds,
and never hang; mutated PIDF the plain reader accepts reads the same in expat."""

from __future__ import annotations

import pytest

from tests.fuzzing import TARGETS, run

COUNTS = {
    "sip": 5000,
    "body": 1500,
    "pidf-plain": 5000,
    "wire": 5000,
    "ring": 400,
    "engine": 3000,
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzzed_inputs_give_only_documented_errors(target: str, seed: int) -> None:
    stats = run(target, seed, COUNTS[target])
    assert stats.failures == []
    assert stats.inputs == COUNTS[target]


@pytest.mark.parametrize("target", sorted(set(TARGETS) - {"engine"}))
def test_the_mutations_reach_both_the_accepting_and_the_refusing_paths(target: str) -> None:
    stats = run(target, 3, COUNTS[target])
    assert stats.accepted > 0 and stats.rejected > 0


def test_a_run_is_the_same_for_the_same_seed() -> None:
    first, second = run("sip", 11, 500), run("sip", 11, 500)
    assert (first.accepted, first.rejected) == (second.accepted, second.rejected)
