"""The contract every store back-end keeps: SQLite and PostgreSQL, same tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from presence_b2b.server.routing import shard_of
from presence_b2b.store.backend import Backend
from presence_b2b.store.buffer import Batch
from presence_b2b.store.connect import open_backend
from presence_b2b.store.partition import PARTITIONS, partition_of
from presence_b2b.store.record import DialogRecord

from tests.peers.postgres import PostgresServer

pytestmark = pytest.mark.integration


def dialog(n: int, **changes: object) -> DialogRecord:
    values: dict[str, object] = dict(
        package="presence",
        record=f"sip:r{n}@example.com",
        subscriber=f"sip:s{n}@example.org",
        call_id=f"c{n}",
        local_tag=f"l{n}",
        remote_tag=f"t{n}",
        local_cseq=3,
        route_set=("sip:p1.example.com;lr", "sip:p2.example.com;lr"),
        remote_target=f"sip:pa{n}@192.0.2.1:5060",
        expires_at=1_900_000_000.5,
        refresh_at=1_899_999_000.25,
        last_status=b"\x81\xa4kind\xa6status",
        owner="node-a",
        cseq_high=67,
    )
    values.update(changes)
    return DialogRecord(**values)  # type: ignore[arg-type]


def batch(*records: DialogRecord, deletes: tuple[tuple[str, str, str], ...] = ()) -> Batch:
    return Batch({r.key: r for r in records}, set(deletes))


def held_epochs(store: Backend) -> dict[int, int]:
    return {p: h.epoch for p, h in store.lease_round({}, claim=True).items()}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/dialogs.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def store(url: str) -> Iterator[Backend]:
    backend = open_backend(url, node="node-a", lease_seconds=10)
    yield backend
    backend.close()


def load_all(store: Backend) -> dict[tuple[str, str, str], DialogRecord]:
    return {r.key: r for r in store.load(0, 1)}


def test_a_written_dialog_reads_back_field_for_field(store: Backend) -> None:
    original = dialog(1)
    assert store.write(batch(original), held_epochs(store)) == frozenset()
    assert load_all(store) == {original.key: original}


def test_an_unconfirmed_dialog_without_route_or_status_reads_back(store: Backend) -> None:
    early = dialog(2, remote_tag=None, route_set=(), last_status=None)
    store.write(batch(early), held_epochs(store))
    assert load_all(store)[early.key] == early


def test_a_second_write_replaces_the_first(store: Backend) -> None:
    epochs = held_epochs(store)
    store.write(batch(dialog(1, local_cseq=3)), epochs)
    store.write(batch(dialog(1, local_cseq=4, remote_target="sip:new@192.0.2.9")), epochs)
    (only,) = load_all(store).values()
    assert (only.local_cseq, only.remote_target) == (4, "sip:new@192.0.2.9")


def test_the_cseq_high_water_mark_never_goes_down(store: Backend) -> None:
    epochs = held_epochs(store)
    store.write(batch(dialog(1, cseq_high=200)), epochs)
    store.write(batch(dialog(1, cseq_high=70)), epochs)
    assert load_all(store)[dialog(1).key].cseq_high == 200


def test_a_deleted_dialog_is_gone(store: Backend) -> None:
    epochs = held_epochs(store)
    store.write(batch(dialog(1), dialog(2)), epochs)
    store.write(batch(deletes=(dialog(1).key,)), epochs)
    assert set(load_all(store)) == {dialog(2).key}


def test_a_shard_loads_exactly_the_dialogs_the_stable_hash_gives_it(store: Backend) -> None:
    records = [dialog(n) for n in range(60)]
    store.write(batch(*records), held_epochs(store))
    for shards in (1, 2, 3, 7):
        for shard in range(shards):
            loaded = {r.key for r in store.load(shard, shards)}
            expected = {r.key for r in records if shard_of(r.record, r.subscriber, shards) == shard}
            assert loaded == expected, (shard, shards)


def test_loading_can_be_limited_to_some_partitions(store: Backend) -> None:
    records = [dialog(n) for n in range(40)]
    store.write(batch(*records), held_epochs(store))
    some = {partition_of(r.record, r.subscriber) for r in records[:5]}
    loaded = {r.key for r in store.load(0, 1, some)}
    assert loaded == {r.key for r in records if partition_of(r.record, r.subscriber) in some}
    assert store.load(0, 1, ()) == []


def test_a_fresh_database_is_at_the_current_schema_version(store: Backend) -> None:
    from presence_b2b.store.schema import CURRENT

    assert store.version() == CURRENT


def test_reopening_keeps_the_dialogs(url: str) -> None:
    first = open_backend(url, node="node-a")
    first.write(batch(dialog(1)), held_epochs(first))
    first.close()
    again = open_backend(url, node="node-a")
    try:
        assert load_all(again) == {dialog(1).key: dialog(1)}
    finally:
        again.close()


def test_a_lone_node_holds_every_partition(store: Backend) -> None:
    assert set(store.lease_round({}, claim=True)) == set(range(PARTITIONS))


def test_the_owner_stored_is_the_node_that_wrote_the_row(store: Backend) -> None:
    store.write(batch(dialog(1, owner="someone-else")), held_epochs(store))
    assert load_all(store)[dialog(1).key].owner == "node-a"
