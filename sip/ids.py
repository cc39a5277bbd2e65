"""Call-IDs, tags and Via branches from the OS CSPRNG.

Identifiers must be unguessable (a guessed tag or Call-ID lets a third party inject
NOTIFYs into a dialog) and unique across forked shards. Reading os.urandom once per
identifier costs a system call each, so random bytes are drawn in batches and sliced;
the batch is discarded in a forked child so parent and child never share bytes.
"""

from __future__ import annotations

import os

__all__ = ["BRANCH_COOKIE", "new_branch", "new_call_id", "new_tag", "random_hex"]

#: RFC 3261 §8.1.1.7: branches starting with this are globally unique transaction ids.
BRANCH_COOKIE = "z9hG4bK"

_BATCH = 4096
_pool = b""
_pos = 0


def _discard_pool() -> None:
    global _pool, _pos
    _pool = b""
    _pos = 0


os.register_at_fork(after_in_child=_discard_pool)


def random_hex(nbytes: int) -> str:
    """`nbytes` random bytes as lowercase hex."""
    global _pool, _pos
    if _pos + nbytes > len(_pool):
        _pool = os.urandom(max(_BATCH, nbytes))
        _pos = 0
    chunk = _pool[_pos : _pos + nbytes]
    _pos += nbytes
    return chunk.hex()


def new_tag() -> str:
    """From/To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return random_hex(8)


def new_branch() -> str:
    """Via branch with the magic cookie and 96 random bits."""
    return BRANCH_COOKIE + random_hex(12)


def new_call_id(host: str, label: str = "") -> str:
    """Call-ID `<label><128 random bits>@<host>` (RFC 3261 §8.1.1.4); the label
    lets its maker find the dialog without an index by Call-ID."""
    return f"{label}{random_hex(16)}@{host}"
