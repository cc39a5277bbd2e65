"""Strings packed into one bytes object, each behind its length.

Records that must be small (a subscription at rest in a shard, a client
subscription in the supervisor's registry) keep their strings this way: one
bytes object costs its header once, where each str costs ~50 bytes of its own.
"""

from __future__ import annotations

__all__ = ["pack_counts", "pack_strings", "unpack_counts", "unpack_first", "unpack_strings"]


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


def pack_counts(out: bytearray, values: tuple[int, ...]) -> None:
    """Append each value (≥ 0) in 7-bit groups, low first, the high bit set on
    all but the last (LEB128): the counters of a record at rest are mostly
    below 128 and take one byte where a fixed width took four or eight. A
    negative value raises OverflowError, and the caller keeps it unpacked."""
    if values and min(values) >= 0 and max(values) < 0x80:
        out += bytes(values)  # the usual case: one byte each
        return
    for value in values:
        if value < 0:
            raise OverflowError(f"cannot pack a negative count ({value})")
        rest = value
        while rest > 0x7F:
            out.append((rest & 0x7F) | 0x80)
            rest >>= 7
        out.append(rest)


def unpack_counts(data: bytes, offset: int, count: int) -> tuple[list[int], int]:
    """``count`` values :func:`pack_counts` packed at ``offset``, and where they end."""
    end = len(data)
    head = data[offset : offset + count]
    if len(head) == count and (not count or max(head) < 0x80):
        return list(head), offset + count  # the usual case: one byte each
    values: list[int] = []
    for _ in range(count):
        value = shift = 0
        while True:
            if offset >= end:
                raise ValueError("packed counts cut short")
            byte = data[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        values.append(value)
    return values, offset
