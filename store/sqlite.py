"""The embedded store: one SQLite file in WAL mode, shared by the shards of a host.

WAL lets the shards read while one of them writes; ``synchronous=NORMAL`` makes a
commit cost no fsync (a power cut may lose the last commits, a crashed process
loses nothing committed); the busy timeout makes a shard wait its turn for the
write lock instead of failing when another shard is mid-batch.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Collection, Mapping

from .backend import Held, StoreUnavailableError
from .buffer import Batch
from .partition import PARTITIONS, shard_filter
from .record import DialogRecord
from .rows import record_of, row_of, select_sql, upsert_sql
from .schema import Dialect, upgrade

__all__ = ["SqliteBackend"]

_UPSERT = upsert_sql("?", "MAX")
_DELETE = "DELETE FROM dialogs WHERE package = ? AND record = ? AND subscriber = ?"
#: How long a writer waits for another shard's transaction, in milliseconds.
BUSY_TIMEOUT_MS = 5000
_ALL = {p: Held(0, math.inf) for p in range(PARTITIONS)}


def _enter_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting out the other shards doing the same.

    Changing the journal mode takes an exclusive lock and SQLite answers "database
    is locked" at once, without its busy handler, while another shard of the same
    start holds it; so this waits here, as long as a writer would.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SqliteBackend:
    """The Backend contract over one SQLite file."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str, *, node: str) -> None:
        self.node = node
        try:
            # Outside systemd (no StateDirectory=) the directory may not exist yet.
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, mode=0o750, exist_ok=True)
            # Autocommit mode: transactions are begun and ended explicitly below.
            self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            _enter_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailableError(f"sqlite {path}: {exc}") from exc

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # one shard upgrades, the others wait
        try:
            upgrade(db.execute, "sqlite")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def version(self) -> int:
        return int(self._db.execute("SELECT version FROM store_version").fetchone()[0])

    def load(
        self, shard: int, shards: int, partitions: Collection[int] | None = None
    ) -> list[DialogRecord]:
        where = shard_filter(shard, shards)
        if partitions is not None:
            where += f" AND vpart IN ({', '.join(str(int(p)) for p in partitions) or 'NULL'})"
        try:
            return [record_of(row) for row in self._db.execute(select_sql(where))]
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"sqlite load: {exc}") from exc

    def write(self, batch: Batch, epochs: Mapping[int, int]) -> frozenset[int]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, [row_of(r, 0, self.node) for r in batch.upserts.values()])
                db.executemany(_DELETE, list(batch.deletes))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"sqlite write: {exc}") from exc
        return frozenset()

    def lease_round(self, held: Mapping[int, int], *, claim: bool) -> dict[int, Held]:
        return dict(_ALL)

    def release(self, partitions: Collection[int]) -> None:
        """Nothing to give up: one host's file has no leases (lease_round holds all)."""

    def close(self) -> None:
        self._db.close()
