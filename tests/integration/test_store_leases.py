"""Leases and fencing: two nodes on one PostgreSQL, as two store clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest
from presence_b2b.store.backend import Backend, StoreUnavailableError
from presence_b2b.store.buffer import Batch
from presence_b2b.store.connect import open_backend
from presence_b2b.store.driver import DialogStore, WriteOutcome
from presence_b2b.store.partition import PARTITIONS, partition_of
from presence_b2b.store.record import Change, DialogRecord

from tests.peers.postgres import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

LEASE = 1.0


def dialog(n: int = 1, **changes: object) -> DialogRecord:
    values: dict[str, object] = dict(
        package="presence", record=f"sip:r{n}@example.com", subscriber=f"sip:s{n}@example.org",
        call_id=f"c{n}", local_tag="l", remote_tag="t", local_cseq=1, route_set=(),
        remote_target="sip:pa@192.0.2.1", expires_at=2e9, refresh_at=2e9, last_status=None,
        owner="a", cseq_high=1,
    )  # fmt: skip
    values.update(changes)
    return DialogRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.create_database()


@pytest.fixture
def nodes(url: str) -> Iterator[tuple[Backend, Backend]]:
    a = open_backend(url, node="node-a", lease_seconds=LEASE)
    b = open_backend(url, node="node-b", lease_seconds=LEASE)
    yield a, b
    a.close()
    b.close()


def epochs(held: dict[int, object]) -> dict[int, int]:
    return {p: h.epoch for p, h in held.items()}  # type: ignore[attr-defined]


def test_while_a_holds_a_partition_b_cannot_claim_it_nor_write_to_it(
    nodes: tuple[Backend, Backend],
) -> None:
    a, b = nodes
    a_held = a.lease_round({}, claim=True)
    assert len(a_held) == PARTITIONS
    assert b.lease_round({}, claim=True) == {}
    part = partition_of(dialog().record, dialog().subscriber)
    forged = {part: a_held[part].epoch}  # even A's own epoch does not help B
    assert b.write(Batch({dialog().key: dialog()}), forged) == frozenset({part})
    assert a.load(0, 1) == []


def test_renewing_keeps_the_lease_past_its_first_term(nodes: tuple[Backend, Backend]) -> None:
    a, b = nodes
    held = epochs(a.lease_round({}, claim=True))
    for _ in range(3):
        time.sleep(LEASE / 2)
        assert epochs(a.lease_round(held, claim=True)) == held
    assert b.lease_round({}, claim=True) == {}


def test_after_a_lapses_b_claims_with_a_higher_epoch_and_a_is_refused(
    nodes: tuple[Backend, Backend],
) -> None:
    a, b = nodes
    a_epochs = epochs(a.lease_round({}, claim=True))
    time.sleep(LEASE + 0.2)
    b_epochs = epochs(b.lease_round({}, claim=True))
    assert set(b_epochs) == set(range(PARTITIONS))
    assert all(b_epochs[p] > a_epochs[p] for p in b_epochs)
    part = partition_of(dialog().record, dialog().subscriber)
    assert a.write(Batch({dialog().key: dialog()}), a_epochs) == frozenset({part})
    assert epochs(a.lease_round(a_epochs, claim=True)) == {}


def test_a_released_partition_is_claimable_at_once(nodes: tuple[Backend, Backend]) -> None:
    a, b = nodes
    a.lease_round({}, claim=True)
    a.release([0, 1, 2])
    assert set(b.lease_round({}, claim=True)) == {0, 1, 2}


def store_of(url: str, node: str, **kwargs: object) -> DialogStore:
    return DialogStore(
        lambda: open_backend(url, node=node, lease_seconds=LEASE),
        shard=0, shards=1, interval=0.05, lease_seconds=LEASE, keeper=True,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_node_whose_write_is_refused_is_told_at_once_and_stops_owning(url: str) -> None:
    lost: list[frozenset[int]] = []

    async def scenario() -> None:
        a = store_of(url, "node-a", on_lost=lost.append)
        await a.start()
        created = await a.put_now(dialog(owner="node-a"))
        assert created is WriteOutcome.WRITTEN and a.owns(dialog().key)
        # B takes over behind A's back (A's lease lapsed while it was stalled).
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("UPDATE leases SET lease_until = now() - interval '1 second'")
        b = open_backend(url, node="node-b", lease_seconds=LEASE)
        b.lease_round({}, claim=True)
        moved = dialog(owner="node-a", remote_target="sip:x@192.0.2.2")
        outcome = await a.put_now(moved, Change.ROUTE)
        assert outcome is WriteOutcome.REFUSED
        assert not a.owns(dialog().key)
        b.close()
        await a.close(release=False)

    asyncio.run(scenario())
    part = partition_of(dialog().record, dialog().subscriber)
    assert lost and part in lost[0]


def test_the_new_owner_resumes_above_every_cseq_the_old_one_could_have_sent(url: str) -> None:
    a = open_backend(url, node="node-a", lease_seconds=LEASE)
    a_epochs = epochs(a.lease_round({}, claim=True))
    created = dialog(owner="node-a", local_cseq=5).with_cseq_reserved(5)
    a.write(Batch({created.key: created}), a_epochs)
    # A may now send any CSeq up to the mark without writing again, then dies.
    sent_up_to = created.cseq_high
    a.close()
    time.sleep(LEASE + 0.2)

    async def take_over() -> list[DialogRecord]:
        b = store_of(url, "node-b")
        resumed = await b.start()
        await b.close()
        return resumed

    (resumed,) = asyncio.run(take_over())
    assert resumed.key == created.key
    assert resumed.local_cseq >= sent_up_to  # the next request carries local_cseq + 1


def test_a_partition_freed_by_a_dead_node_is_claimed_and_its_dialogs_adopted(url: str) -> None:
    adopted: list[DialogRecord] = []
    a = open_backend(url, node="node-a", lease_seconds=LEASE)
    a_epochs = epochs(a.lease_round({}, claim=True))
    created = dialog(owner="node-a").with_cseq_reserved(1)
    a.write(Batch({created.key: created}), a_epochs)

    async def b_runs_while_a_dies() -> list[DialogRecord]:
        b = store_of(url, "node-b", on_adopted=adopted.extend)
        at_start = await b.start()
        a.close()  # A dies without releasing: its leases run out
        for _ in range(40):
            await asyncio.sleep(0.1)
            if adopted:
                break
        assert b.owns(created.key)
        await b.close()
        return at_start

    assert asyncio.run(b_runs_while_a_dies()) == []
    assert [r.key for r in adopted] == [created.key]
    assert adopted[0].local_cseq == created.cseq_high


def test_a_node_cut_off_from_the_database_stops_on_its_own_clock(url: str) -> None:
    lost: list[frozenset[int]] = []
    cut_off = False

    def flaky() -> Backend:
        backend = open_backend(url, node="node-a", lease_seconds=LEASE)
        renew = backend.lease_round

        def lease_round(held: dict[int, int], *, claim: bool) -> dict[int, object]:
            if cut_off:
                raise StoreUnavailableError("cut off")
            return renew(held, claim=claim)  # type: ignore[return-value]

        backend.lease_round = lease_round  # type: ignore[assignment,method-assign]
        return backend

    async def scenario() -> None:
        nonlocal cut_off
        a = DialogStore(
            flaky, shard=0, shards=1, interval=0.05, lease_seconds=LEASE, keeper=True,
            on_lost=lost.append,
        )  # fmt: skip
        await a.start()
        assert a.owns(dialog().key)
        cut_off = True
        await asyncio.sleep(LEASE)
        assert not a.owns(dialog().key)
        await a.close(release=False)

    asyncio.run(scenario())
    assert frozenset().union(*lost) == frozenset(range(PARTITIONS))


def test_the_other_shards_of_a_node_follow_the_keeper_and_may_write(url: str) -> None:
    async def scenario() -> WriteOutcome:
        keeper = store_of(url, "node-a")
        follower = DialogStore(
            lambda: open_backend(url, node="node-a", lease_seconds=LEASE),
            shard=0, shards=1, interval=0.05, lease_seconds=LEASE, keeper=False,
        )  # fmt: skip
        await keeper.start()
        await follower.start()
        await asyncio.sleep(LEASE * 1.5)  # past the first term: renewals kept it
        outcome = await follower.put_now(dialog(owner="node-a"))
        await follower.close()
        await keeper.close()
        return outcome

    assert asyncio.run(scenario()) is WriteOutcome.WRITTEN


def test_free_partitions_are_shared_out_by_fair_share_among_live_nodes(
    nodes: tuple[Backend, Backend],
) -> None:
    a, b = nodes
    a_all = epochs(a.lease_round({}, claim=True))
    a.release(range(424, PARTITIONS))  # A keeps 424 live, 600 are free
    a_held = {p: e for p, e in a_all.items() if p < 424}
    b_held = b.lease_round({}, claim=True)
    assert len(b_held) == PARTITIONS // 2
    a_after = a.lease_round(a_held, claim=True)
    assert len(a_after) == PARTITIONS // 2
    assert not set(a_after) & set(b_held)
