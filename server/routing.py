"""Which shard owns a (record, subscriber) pair.

The hash must be stable across processes and restarts (a respawned shard and a
restarted service must agree on ownership), so it is BLAKE2b over the pair, never
Python's per-process salted ``hash()``.
"""

from __future__ import annotations

import hashlib


def shard_of(record: str, subscriber: str, shards: int) -> int:
    """The shard index in ``range(shards)`` that owns this pair."""
    if shards <= 0:
        raise ValueError(f"shards must be positive, got {shards}")
    key = record.encode("utf-8", "surrogatepass") + b"\0" + subscriber.encode(
        "utf-8", "surrogatepass"
    )
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards
