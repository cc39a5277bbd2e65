"""The engine's mutation fuzzer, run for longer than the unit tests do.

Run: ``.venv/bin/python bench/fuzz_engine.py [--iterations N] [--seed S] [--seeds K]``.

Each seed drives one engine through ``--iterations`` inputs from a mutating
presence server (tests/unit/shard/engine_fuzz.py) and stops at the first
breach: an exception out of the engine, a message that cannot be encoded for
a ring, or a live subscription with neither a timer nor a request under way.
Prints one line per seed and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit" / "shard"))

from engine_fuzz import run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20_000, help="inputs per seed")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=5, help="how many seeds, from --seed on")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # the engine logs every internal error it absorbs
    totals = {"steps": 0, "datagrams": 0, "messages": 0, "internal": 0}
    t0 = time.perf_counter()
    for seed in range(args.seed, args.seed + args.seeds):
        stats = run(seed, args.iterations)
        print(
            f"seed {seed}: {stats.steps} inputs, {stats.datagrams} datagrams out, "
            f"{stats.messages} messages, {stats.internal} internal errors absorbed, "
            f"failures {dict(sorted(stats.kinds.items()))}"
        )
        for key in totals:
            totals[key] += getattr(stats, key)
    print(json.dumps({**totals, "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
