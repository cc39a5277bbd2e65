"""The contract every back-end keeps.

A back-end is synchronous and single-threaded on purpose: the store runs it in
its own writer thread (see driver.py), so the event loop never waits on a disk
or a socket, and the contract tests call it directly. SQLite and PostgreSQL
pass the same tests; leases are PostgreSQL's business, and SQLite, the store of
one host, holds every partition forever at epoch 0.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from .buffer import Batch
from .record import DialogRecord
from .schema import Dialect

__all__ = ["Backend", "Held", "StoreUnavailableError"]


class StoreUnavailableError(RuntimeError):
    """The database could not be reached or refused the statement."""


@dataclass(frozen=True, slots=True)
class Held:
    """A partition this node holds: the lease epoch to write under, and how long
    the lease still runs by the database's clock when it was read."""

    epoch: int
    seconds_left: float


class Backend(Protocol):
    """What the store asks of a database. Not thread-safe: one thread per back-end."""

    dialect: Dialect
    node: str

    def version(self) -> int:
        """The schema version the database is at."""
        ...

    def load(
        self, shard: int, shards: int, partitions: Collection[int] | None = None
    ) -> list[DialogRecord]:
        """Every stored dialog of ``shard`` (by the stable hash over ``shards``),
        limited to ``partitions`` when given."""
        ...

    def write(self, batch: Batch, epochs: Mapping[int, int]) -> frozenset[int]:
        """Write ``batch`` in one transaction, each row fenced by the epoch its
        partition is held under in ``epochs``. Returns the partitions refused
        (not held, or held under another epoch); their rows were not written."""
        ...

    def lease_round(self, held: Mapping[int, int], *, claim: bool) -> dict[int, Held]:
        """Renew the leases in ``held`` (partition -> epoch), claim expired ones
        up to a fair share when ``claim``, and say what this node holds now."""
        ...

    def release(self, partitions: Collection[int]) -> None:
        """Give up leases at once (a clean stop), so another node need not wait."""
        ...

    def close(self) -> None: ...
