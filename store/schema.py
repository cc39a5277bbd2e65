"""The tables and their history: upgrade steps, applied in order, once each.

A table ``store_version`` holds one row, the version the database is at. A
store that opens a database runs every step above that version in one
transaction, so a database is always at exactly one version; one newer than
this code knows is refused rather than misread. Both dialects share the steps;
only the column types and PostgreSQL's lease table differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from .partition import PARTITIONS

__all__ = ["CURRENT", "Dialect", "SchemaTooNewError", "steps", "upgrade"]

Dialect = Literal["sqlite", "postgresql"]


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer release; this one must not touch it."""


_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"int": "INTEGER", "real": "REAL", "text": "TEXT", "bytes": "BLOB"},
    "postgresql": {"int": "BIGINT", "real": "DOUBLE PRECISION", "text": "TEXT", "bytes": "BYTEA"},
}


def _v1(d: Dialect) -> list[str]:
    """Version 1: the dialogs of one host."""
    t = _TYPES[d]
    return [
        f"""CREATE TABLE dialogs (
            package {t['text']} NOT NULL,
            record {t['text']} NOT NULL,
            subscriber {t['text']} NOT NULL,
            key_hash {t['int']} NOT NULL,
            call_id {t['text']} NOT NULL,
            local_tag {t['text']} NOT NULL,
            remote_tag {t['text']},
            local_cseq {t['int']} NOT NULL,
            route_set {t['text']} NOT NULL,
            remote_target {t['text']} NOT NULL,
            expires_at {t['real']} NOT NULL,
            refresh_at {t['real']} NOT NULL,
            last_status {t['bytes']},
            owner {t['text']} NOT NULL,
            PRIMARY KEY (package, record, subscriber)
        )""",
    ]


def _v2(d: Dialect) -> list[str]:
    """Version 2: several hosts. Virtual partitions with their leases, the epoch
    each row was written under, and the CSeq high-water mark (an old row's mark
    is its last CSeq: nothing above it was ever sent)."""
    t = _TYPES[d]
    statements = [
        f"ALTER TABLE dialogs ADD COLUMN vpart {t['int']} NOT NULL DEFAULT -1",
        f"ALTER TABLE dialogs ADD COLUMN epoch {t['int']} NOT NULL DEFAULT 0",
        f"ALTER TABLE dialogs ADD COLUMN cseq_high {t['int']} NOT NULL DEFAULT 0",
        "UPDATE dialogs SET cseq_high = local_cseq",
        # The partition of an old row, from its hash: unsigned digest mod 1024
        # is the low ten bits, which two's complement leaves as they were.
        f"UPDATE dialogs SET vpart = key_hash & {PARTITIONS - 1}",
        "CREATE INDEX dialogs_vpart ON dialogs (vpart)",
    ]
    if d == "postgresql":
        statements += [
            """CREATE TABLE leases (
                vpart INTEGER PRIMARY KEY,
                owner TEXT NOT NULL,
                epoch BIGINT NOT NULL,
                lease_until TIMESTAMPTZ NOT NULL
            )""",
            "INSERT INTO leases (vpart, owner, epoch, lease_until)"
            f" SELECT g, '', 0, '-infinity' FROM generate_series(0, {PARTITIONS - 1}) AS g",
        ]
    return statements


_STEPS = (_v1, _v2)

#: The version this code writes.
CURRENT = len(_STEPS)


def steps(dialect: Dialect, since: int) -> list[tuple[int, list[str]]]:
    """The statements that take a database at version ``since`` to ``CURRENT``,
    as (version reached, statements), in order."""
    if since > CURRENT:
        raise SchemaTooNewError(f"the store is at version {since}; this release knows {CURRENT}")
    return [(v + 1, _STEPS[v](dialect)) for v in range(since, CURRENT)]


def upgrade(execute: Callable[[str], Any], dialect: Dialect) -> None:
    """Bring the database to ``CURRENT`` through ``execute`` (a connection's
    execute method), inside the caller's transaction, which must keep other
    shards out until it commits."""
    execute("CREATE TABLE IF NOT EXISTS store_version (version INTEGER NOT NULL)")
    row = execute("SELECT version FROM store_version").fetchone()
    if row is None:
        execute("INSERT INTO store_version VALUES (0)")
    for version, statements in steps(dialect, row[0] if row else 0):
        for sql in statements:
            execute(sql)
        execute(f"UPDATE store_version SET version = {int(version)}")
