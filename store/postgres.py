"""The shared store: PostgreSQL through psycopg 3, with leases per virtual partition.

Several hosts share one database. Each of the 1 024 virtual partitions has a
lease row (owner, epoch, lease_until) that its owner renews well inside the
lease; every time is the database's ``now()``, so the hosts' clocks never have
to agree. Claiming an expired lease bumps its epoch, and every write is fenced:
in the writing transaction the lease row is read ``FOR SHARE`` (a claim has to
wait for the write to commit) and only rows of partitions still held under the
writer's epoch are written. A writer that lost a partition gets it back as
refused, which is how the shard learns it must stop.

Session advisory locks were not used: they belong to a connection, so a lost or
re-established connection silently drops or keeps them; they carry no epoch to
fence a write that was already on its way; and they are invisible to a process
that did not take them. A lease row is data: visible, fenced and timed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import psycopg

from .backend import Held, StoreUnavailableError
from .buffer import Batch
from .partition import PARTITIONS, partition_of, shard_filter
from .record import DialogRecord
from .rows import record_of, row_of, select_sql, upsert_sql
from .schema import Dialect, upgrade

__all__ = ["PostgresBackend"]

_UPSERT = upsert_sql("%s", "GREATEST")
_DELETE = "DELETE FROM dialogs WHERE package = %s AND record = %s AND subscriber = %s"
#: Any constant: serialises schema upgrades by several shards and hosts.
_MIGRATION_LOCK = 0x70726573

_FENCE = """
SELECT vpart, epoch FROM leases
WHERE vpart = ANY(%(parts)s) AND owner = %(node)s AND lease_until > now()
FOR SHARE
"""

_RENEW = """
UPDATE leases AS l SET lease_until = now() + make_interval(secs => %(secs)s)
FROM unnest(%(parts)s::int[], %(epochs)s::bigint[]) AS h(vpart, epoch)
WHERE l.vpart = h.vpart AND l.epoch = h.epoch AND l.owner = %(node)s
  AND l.lease_until > now()
"""

# Claim expired partitions, at most up to a fair share among the nodes that hold
# a live lease (this one included), lowest first; SKIP LOCKED keeps two nodes
# claiming at once from waiting on each other, and they get disjoint sets.
_CLAIM = f"""
WITH others AS (
    SELECT count(DISTINCT owner) AS n FROM leases
    WHERE lease_until > now() AND owner <> %(node)s
), mine AS (
    SELECT count(*) AS n FROM leases WHERE owner = %(node)s AND lease_until > now()
), pick AS (
    SELECT vpart FROM leases WHERE lease_until <= now()
    ORDER BY vpart
    LIMIT (SELECT greatest(0, ceil({PARTITIONS}::numeric / (others.n + 1)) - mine.n)::bigint
           FROM others, mine)
    FOR UPDATE SKIP LOCKED
)
UPDATE leases AS l
SET owner = %(node)s, epoch = l.epoch + 1,
    lease_until = now() + make_interval(secs => %(secs)s)
FROM pick WHERE l.vpart = pick.vpart
"""

_HELD = """
SELECT vpart, epoch, extract(epoch FROM lease_until - now())::float8 FROM leases
WHERE owner = %(node)s AND lease_until > now()
"""


class PostgresBackend:
    """The Backend contract over a PostgreSQL database shared by several nodes."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, node: str, lease_seconds: float) -> None:
        if not node:
            raise ValueError("a shared store needs a node name")
        self.node = node
        self.lease_seconds = float(lease_seconds)
        self._url = url
        self._db: psycopg.Connection[Any] | None = None
        with self._guard("connect"):
            self._migrate(self._conn())

    def _conn(self) -> psycopg.Connection[Any]:
        """The connection, made again after it broke (the database restarted)."""
        if self._db is None or self._db.closed or self._db.broken:
            self._db = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        return self._db

    def _guard(self, what: str) -> _Guard:
        return _Guard(what)

    def _migrate(self, db: psycopg.Connection[Any]) -> None:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            upgrade(db.execute, "postgresql")

    def version(self) -> int:
        with self._guard("version"):
            row = self._conn().execute("SELECT version FROM store_version").fetchone()
            return int(row[0]) if row else 0

    def load(
        self, shard: int, shards: int, partitions: Collection[int] | None = None
    ) -> list[DialogRecord]:
        where = shard_filter(shard, shards).replace("%", "%%")  # psycopg's placeholders
        args: tuple[Any, ...] = ()
        if partitions is not None:
            where += " AND vpart = ANY(%s)"
            args = (sorted(partitions),)
        with self._guard("load"):
            cur = self._conn().execute(select_sql(where), args)
            return [record_of(row) for row in cur]

    def write(self, batch: Batch, epochs: Mapping[int, int]) -> frozenset[int]:
        parts_of = {key: partition_of(key[1], key[2]) for key in batch.touched()}
        wanted = set(parts_of.values())
        with self._guard("write"):
            db = self._conn()
            with db.transaction():
                rows = db.execute(_FENCE, {"parts": sorted(wanted), "node": self.node})
                ok = {p for p, e in rows if epochs.get(p) == e}
                upserts = [
                    row_of(r, epochs[parts_of[k]], self.node)
                    for k, r in batch.upserts.items()
                    if parts_of[k] in ok
                ]
                deletes = [k for k in batch.deletes if parts_of[k] in ok]
                with db.cursor() as cur:
                    if upserts:
                        cur.executemany(_UPSERT, upserts)
                    if deletes:
                        cur.executemany(_DELETE, deletes)
        return frozenset(wanted - ok)

    def lease_round(self, held: Mapping[int, int], *, claim: bool) -> dict[int, Held]:
        args = {
            "node": self.node,
            "secs": self.lease_seconds,
            "parts": list(held),
            "epochs": list(held.values()),
        }
        with self._guard("lease"):
            db = self._conn()
            with db.transaction():
                if held:
                    db.execute(_RENEW, args)
                if claim:
                    db.execute(_CLAIM, args)
                rows = db.execute(_HELD, args).fetchall()
        return {int(p): Held(int(e), float(left)) for p, e, left in rows}

    def release(self, partitions: Collection[int]) -> None:
        with self._guard("release"):
            self._conn().execute(
                "UPDATE leases SET lease_until = '-infinity'"
                " WHERE owner = %s AND vpart = ANY(%s)",
                (self.node, sorted(partitions)),
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class _Guard:
    """Turns the driver's errors into StoreUnavailableError, naming the operation."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, psycopg.Error):
            raise StoreUnavailableError(f"postgresql {self.what}: {exc}") from exc
