"""A record as a table row and back; the one upsert both dialects run.

Kept apart from the back-ends so that SQLite and PostgreSQL cannot drift: the
same columns, in the same order, with the same rule that the CSeq high-water
mark only ever rises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .partition import key_hash, partition_of
from .record import DialogRecord

__all__ = ["COLUMNS", "record_of", "row_of", "select_sql", "upsert_sql"]

COLUMNS = (
    "package", "record", "subscriber", "key_hash", "vpart", "call_id", "local_tag",
    "remote_tag", "local_cseq", "cseq_high", "route_set", "remote_target", "expires_at",
    "refresh_at", "last_status", "owner", "epoch",
)  # fmt: skip

_KEY = ("package", "record", "subscriber")


def row_of(r: DialogRecord, epoch: int, owner: str) -> tuple[Any, ...]:
    """The row of ``r`` as written by node ``owner`` under lease ``epoch``. Route
    URIs never hold a line break, so the route set is stored as lines."""
    return (
        r.package, r.record, r.subscriber, key_hash(r.record, r.subscriber),
        partition_of(r.record, r.subscriber), r.call_id, r.local_tag, r.remote_tag,
        r.local_cseq, max(r.cseq_high, r.local_cseq), "\n".join(r.route_set), r.remote_target,
        r.expires_at, r.refresh_at, r.last_status, owner, epoch,
    )  # fmt: skip


def record_of(row: Sequence[Any]) -> DialogRecord:
    """The record of a row read with ``select_sql``."""
    (package, record, subscriber, _hash, _vpart, call_id, local_tag, remote_tag, local_cseq,
     cseq_high, route_set, remote_target, expires_at, refresh_at, last_status, owner,
     _epoch) = row  # fmt: skip
    return DialogRecord(
        package=package,
        record=record,
        subscriber=subscriber,
        call_id=call_id,
        local_tag=local_tag,
        remote_tag=remote_tag,
        local_cseq=int(local_cseq),
        route_set=tuple(route_set.split("\n")) if route_set else (),
        remote_target=remote_target,
        expires_at=float(expires_at),
        refresh_at=float(refresh_at),
        last_status=bytes(last_status) if last_status is not None else None,
        owner=owner,
        cseq_high=int(cseq_high),
    )


def upsert_sql(mark: str, greatest: str) -> str:
    """INSERT … ON CONFLICT for one row; ``mark`` is the driver's placeholder
    (``?`` or ``%s``), ``greatest`` its two-argument maximum (MAX or GREATEST)."""
    cols = ", ".join(COLUMNS)
    marks = ", ".join([mark] * len(COLUMNS))
    sets = ", ".join(
        f"{c} = {greatest}(dialogs.cseq_high, excluded.cseq_high)"
        if c == "cseq_high"
        else f"{c} = excluded.{c}"
        for c in COLUMNS
        if c not in _KEY
    )
    return (
        f"INSERT INTO dialogs ({cols}) VALUES ({marks})"
        f" ON CONFLICT (package, record, subscriber) DO UPDATE SET {sets}"
    )


def select_sql(where: str) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM dialogs WHERE {where}"
