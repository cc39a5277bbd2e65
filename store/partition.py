"""Where a dialog belongs: a shard of this node, and a virtual partition of the
shared store.

Both derive from the one stable hash of server/routing.py (BLAKE2b over record
and subscriber), so the store, the supervisor and every node agree without
asking each other. Nothing stored depends on the shard count: a shard filters
by ``shard_of(record, subscriber, shards)`` when it loads, so a changed count
re-partitions the dialogs on the next start by itself.
"""

from __future__ import annotations

import hashlib

__all__ = ["PARTITIONS", "key_hash", "partition_of", "shard_filter"]

#: Virtual partitions of the (package, record, subscriber) space; a lease covers
#: one. Fixed forever: changing it would move every dialog at once.
PARTITIONS = 1024

_U64 = 1 << 64


def _digest(record: str, subscriber: str) -> int:
    key = record.encode("utf-8", "surrogatepass") + b"\0" + subscriber.encode(
        "utf-8", "surrogatepass"
    )
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def key_hash(record: str, subscriber: str) -> int:
    """The routing hash as a signed 64-bit integer, the widest column both
    SQLite and PostgreSQL hold (two's complement of the unsigned digest)."""
    h = _digest(record, subscriber)
    return h - _U64 if h >= 1 << 63 else h


def partition_of(record: str, subscriber: str) -> int:
    """The virtual partition in ``range(PARTITIONS)`` of this pair."""
    return _digest(record, subscriber) % PARTITIONS


def shard_filter(shard: int, shards: int) -> str:
    """SQL condition selecting the rows whose ``shard_of(record, subscriber,
    shards)`` is ``shard``, computed from the stored signed ``key_hash``.

    SQL's ``%`` truncates toward zero; a negative stored hash stands for
    ``hash + 2**64``, hence the offset ``2**64 % shards``. Only integers are
    written into the text, so the same fragment serves both dialects.
    """
    if shards <= 0 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards} does not exist")
    n, off = int(shards), _U64 % shards
    return (
        f"((key_hash % {n}) + {n} + CASE WHEN key_hash < 0 THEN {off} ELSE 0 END) % {n}"
        f" = {int(shard)}"
    )
