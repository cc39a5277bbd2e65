"""Partitions and shard filters agree with the supervisor's stable hash."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.server.routing import shard_of
from presence_b2b.store.partition import PARTITIONS, key_hash, partition_of, shard_filter
from presence_b2b.store.record import CSEQ_BLOCK, DialogRecord

uris = st.text(min_size=1, max_size=40)


@given(uris, uris, st.integers(min_value=1, max_value=64))
def test_the_sql_shard_filter_picks_the_shard_the_supervisor_routes_to(
    record: str, subscriber: str, shards: int
) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (key_hash INTEGER)")
    db.execute("INSERT INTO t VALUES (?)", (key_hash(record, subscriber),))
    owner = shard_of(record, subscriber, shards)
    for shard in range(shards):
        where = shard_filter(shard, shards)
        (hit,) = db.execute(f"SELECT count(*) FROM t WHERE {where}").fetchone()
        assert hit == (shard == owner)


@given(uris, uris)
def test_the_partition_is_the_low_bits_of_the_stored_hash(record: str, subscriber: str) -> None:
    assert partition_of(record, subscriber) == key_hash(record, subscriber) & (PARTITIONS - 1)
    assert partition_of(record, subscriber) == shard_of(record, subscriber, PARTITIONS)


def test_an_adopted_record_resumes_at_its_high_water_mark() -> None:
    record = DialogRecord(
        package="presence", record="sip:r@x", subscriber="sip:s@y", call_id="c",
        local_tag="l", remote_tag="t", local_cseq=5, route_set=(), remote_target="sip:t@z",
        expires_at=0.0, refresh_at=0.0, last_status=None,
    ).with_cseq_reserved(5)  # fmt: skip
    assert record.cseq_high == 5 + CSEQ_BLOCK
    assert record.adopted().local_cseq == record.cseq_high
