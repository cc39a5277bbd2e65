"""Schema upgrades: a database written by an older release opens, upgraded, data kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from presence_b2b.store.connect import open_backend
from presence_b2b.store.partition import key_hash, partition_of
from presence_b2b.store.schema import CURRENT, SchemaTooNewError, steps

from tests.peers.postgres import PostgresServer

pytestmark = pytest.mark.integration

RECORD, SUBSCRIBER = "sip:alice@example.com", "sip:bob@example.org"
V1_ROW = (
    "presence", RECORD, SUBSCRIBER, key_hash(RECORD, SUBSCRIBER), "call-1", "ltag", "rtag", 7,
    "sip:p.example.com;lr", "sip:pa@192.0.2.1", 1.9e9, 1.89e9, b"status", "old-node",
)  # fmt: skip


def at_version_1_sqlite(path: Path) -> str:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE store_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO store_version VALUES (1)")
    for sql in steps("sqlite", 0)[0][1]:
        db.execute(sql)
    db.execute(f"INSERT INTO dialogs VALUES ({', '.join('?' * len(V1_ROW))})", V1_ROW)
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def at_version_1_postgres(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE store_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO store_version VALUES (1)")
        for sql in steps("postgresql", 0)[0][1]:
            db.execute(sql)  # type: ignore[arg-type]
        db.execute(f"INSERT INTO dialogs VALUES ({', '.join(['%s'] * len(V1_ROW))})", V1_ROW)  # type: ignore[arg-type]
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return at_version_1_sqlite(tmp_path / "old.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return at_version_1_postgres(server.create_database())


def test_a_version_1_database_is_upgraded_to_the_current_version(old_url: str) -> None:
    store = open_backend(old_url, node="node-a")
    try:
        assert store.version() == CURRENT
    finally:
        store.close()


def test_dialogs_written_before_the_upgrade_are_kept_with_their_cseq_as_the_mark(
    old_url: str,
) -> None:
    store = open_backend(old_url, node="node-a")
    try:
        (record,) = store.load(0, 1, {partition_of(RECORD, SUBSCRIBER)})
    finally:
        store.close()
    assert (record.call_id, record.local_cseq, record.cseq_high) == ("call-1", 7, 7)
    assert record.route_set == ("sip:p.example.com;lr",)
    assert record.last_status == b"status"


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    url = at_version_1_sqlite(tmp_path / "new.db")
    db = sqlite3.connect(tmp_path / "new.db")
    db.execute("UPDATE store_version SET version = ?", (CURRENT + 1,))
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNewError):
        open_backend(url, node="node-a")
