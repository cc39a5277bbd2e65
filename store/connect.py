"""The one place that picks a back-end: by the scheme of ``[store] url``."""

from __future__ import annotations

from .backend import Backend
from .schema import Dialect
from .sqlite import SqliteBackend

__all__ = ["open_backend", "parse_url"]


def parse_url(url: str) -> tuple[Dialect, str]:
    """(dialect, what its driver takes): ``sqlite:////abs/file.db`` gives the
    path after the third slash (four slashes: absolute), ``postgresql://…`` and
    ``postgres://…`` are passed to libpq as they are."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite", url[len("sqlite:///") :]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    raise ValueError(f"not a store URL (sqlite:////path or postgresql://…): {url!r}")


def open_backend(url: str, *, node: str, lease_seconds: float = 10.0) -> Backend:
    """Connect, create or upgrade the schema, and return the back-end for ``url``.
    Call it in the thread that will use the back-end."""
    dialect, target = parse_url(url)
    if dialect == "sqlite":
        return SqliteBackend(target, node=node)
    # psycopg (and libpq) is loaded only by a store that is configured to use it.
    from .postgres import PostgresBackend  # noqa: PLC0415

    return PostgresBackend(target, node=node, lease_seconds=lease_seconds)
