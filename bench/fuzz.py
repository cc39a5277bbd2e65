"""Long fuzz runs of the targets in tests/fuzzing.py (CI runs short ones).

Run: ``.venv/bin/python bench/fuzz.py [--target T|all] [--count N] [--seed S]``.

For each target: inputs, inputs per second, how many were accepted and
refused, the failures (stops after 10), and this process's RSS before and after
(unauthenticated input must not grow memory). For ``engine`` also the server
transactions left in the engine. Prints a line per target, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from presence_b2b import compiled
from tests.fuzzing import TARGETS, FuzzStats, run


def one(target: str, seed: int, count: int) -> dict[str, object]:
    proc = psutil.Process()
    before = proc.memory_info().rss
    stats: FuzzStats = run(target, seed, count)
    after = proc.memory_info().rss
    rate = stats.inputs / stats.seconds if stats.seconds else 0.0
    print(
        f"{target}: {stats.inputs} inputs in {stats.seconds:.1f} s ({rate:,.0f}/s), "
        f"{stats.accepted} accepted, {stats.rejected} refused, {len(stats.failures)} failures; "
        f"RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB"
    )
    for failure in stats.failures:
        print(f"  FAILURE {failure}")
    return {
        "inputs": stats.inputs,
        "per_s": round(rate),
        "accepted": stats.accepted,
        "refused": stats.rejected,
        "failures": len(stats.failures),
        "rss_before_bytes": before,
        "rss_after_bytes": after,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--target", default="all", choices=["all", *sorted(TARGETS)])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # the ring and engine log what they absorb
    targets = sorted(TARGETS) if args.target == "all" else [args.target]
    result = {t: one(t, args.seed, args.count) for t in targets}
    print(json.dumps({"compiled": compiled.is_compiled(), **result}))


if __name__ == "__main__":
    main()
