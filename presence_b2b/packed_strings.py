"""Strings packed into one bytes object, each behind its length.

Records that must be small (a subscription at rest in a shard, a client
subscription in the supervisor's registry) keep their strings this way: one
bytes object costs its header once, where each str costs ~50 bytes of its own.
"""

from __future__ import annotations

__all__ = ["pack_strings", "unpack_first", "unpack_strings"]


def pack_strings(*values: str) -> bytes:
    """Each value as UTF-8 (lone surrogates as the parser kept them) after its
    length in two little-endian bytes; a value over 64 KiB raises
    OverflowError, and the caller keeps it unpacked."""
    out = bytearray()
    for value in values:
        data = value.encode("utf-8", "surrogateescape")
        out += len(data).to_bytes(2, "little")
        out += data
    return bytes(out)


def unpack_strings(data: bytes, offset: int = 0) -> list[str]:
    """Every string :func:`pack_strings` packed into ``data`` from ``offset`` on."""
    out: list[str] = []
    end = len(data)
    while offset < end:
        size = int.from_bytes(data[offset : offset + 2], "little")
        offset += 2
        out.append(data[offset : offset + size].decode("utf-8", "surrogateescape"))
        offset += size
    return out


def unpack_first(data: bytes, offset: int = 0) -> str:
    """The first string :func:`pack_strings` packed into ``data`` at ``offset``."""
    size = int.from_bytes(data[offset : offset + 2], "little")
    start = offset + 2
    return data[start : start + size].decode("utf-8", "surrogateescape")
