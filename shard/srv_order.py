"""The order in which to try a name's SRV targets (RFC 2782, "Usage rules").

Lowest priority first; within one priority, a weighted random order, so that
servers share the load in proportion to their weights. The random source is
passed in, so tests can fix it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from itertools import groupby

from .dns_answer import Srv


def order_srv(records: Iterable[Srv], rng: random.Random) -> list[Srv]:
    """Every record once, in the order a client should try them."""
    ordered: list[Srv] = []
    by_priority = sorted(records, key=lambda r: r.priority)
    for _, group in groupby(by_priority, key=lambda r: r.priority):
        ordered.extend(_weighted(list(group), rng))
    return ordered


def _weighted(records: list[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782's selection: zero weights first, then draw a running sum."""
    pending = [r for r in records if r.weight == 0] + [r for r in records if r.weight > 0]
    chosen: list[Srv] = []
    while pending:
        pick = rng.randint(0, sum(r.weight for r in pending))
        running = 0
        for i, record in enumerate(pending):
            running += record.weight
            if running >= pick:
                chosen.append(pending.pop(i))
                break
    return chosen
