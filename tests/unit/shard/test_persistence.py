"""A shard's dialogs through a real SQLite store: written from the engine's
journal, taken back by the next process with no SIP traffic, joined by a client
that asks again, and unsubscribed when nobody does within the grace."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from engine_harness import PIDF_OPEN, RECORD, SUBSCRIBER, Harness, probe, response_to
from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.presence.status import Status, SubscriptionState
from presence_b2b.shard.call_id import dialog_id_in
from presence_b2b.shard.fanout import FanOut
from presence_b2b.shard.persistence import JOURNAL_TICK, Persistence
from presence_b2b.shard.subscription import State
from presence_b2b.shard.usage import RestingUsage
from presence_b2b.sip.message import Request
from presence_b2b.store.connect import open_backend
from presence_b2b.store.driver import DialogStore
from presence_b2b.store.record import DialogRecord

KEY = ("presence", RECORD, SUBSCRIBER)


class Shard:
    """An engine on the harness's clock, its fan-out and its store, as the shard
    process joins them (without sockets or clients' rings)."""

    def __init__(self, db: Path, *, grace: float = 60.0) -> None:
        self.h = Harness(journal=True)
        self._delivered = self._finished = 0
        self.m = ShardMetrics(MetricsBlock.create("0"))
        engine = self.h.engine
        self.fanout = FanOut(self.m, self._start, self._stop)
        store = DialogStore(
            lambda: open_backend(f"sqlite:///{db}", node="test"),
            shard=0, shards=1, interval=0.0, lease_seconds=10.0, keeper=True,
        )
        self.persistence = Persistence(
            store, engine, self.fanout, self.m, grace=grace, rate=0.0, flush=self.flush,
        )

    def _start(self, did: int, record: str, subscriber: str, package: str) -> None:
        self.h.engine.subscribe(did, record, subscriber, package)
        self.flush()

    def _stop(self, did: int) -> None:
        self.h.engine.unsubscribe(did)
        self.flush()

    def flush(self) -> None:
        """Hand what the engine gave out since the last flush to the fan-out."""
        self.h.pump()
        delivered, self._delivered = self.h.delivered[self._delivered :], len(self.h.delivered)
        finished, self._finished = self.h.finished[self._finished :], len(self.h.finished)
        for msg in delivered:
            self.fanout.deliver(msg)
        for did in finished:
            self.fanout.finished(did)

    def established(self) -> Request:
        """A client's subscription, answered and notified."""
        self.fanout.subscribe(1, 10, *KEY)
        first = self.h.requests()[-1]
        contact = ("Contact", "<sip:127.0.0.1:5090>")
        self.h.feed(response_to(first, 200, ("Expires", "600"), contact))
        self.h.notify(first, "active;expires=600", PIDF_OPEN)
        self.flush()
        return first


async def running(db: Path) -> Shard:
    """A started shard with one dialog set up and written to the store."""
    shard = Shard(db)
    await shard.persistence.start()
    shard.established()
    await settle()
    return shard


async def restarted(db: Path, *, grace: float = 60.0) -> Shard:
    """A shard that set up one dialog and stopped without a word (as a kill
    leaves it), then the next process of that shard, started."""
    first = Shard(db)
    await first.persistence.start()
    first.established()
    await first.persistence.close(forget=False)
    second = Shard(db, grace=grace)
    await second.persistence.start()
    return second


def rows(db: Path) -> list[DialogRecord]:
    backend = open_backend(f"sqlite:///{db}", node="reader")
    try:
        return backend.load(0, 1)
    finally:
        backend.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def settle() -> None:
    """Long enough for a journal tick and the store's write behind it."""
    await asyncio.sleep(JOURNAL_TICK * 4)


def test_a_confirmed_dialog_reaches_the_store(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        shard = Shard(db)
        await shard.persistence.start()
        first = shard.established()
        await settle()
        (row,) = rows(db)
        assert row.call_id == first.get("Call-ID")
        assert row.remote_tag == "srv1"
        await shard.persistence.close(forget=False)

    run(body)


def test_the_stored_dialog_keeps_its_last_status(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        shard = Shard(db)
        await shard.persistence.start()
        shard.established()
        await shard.persistence.close(forget=False)

    run(body)
    (row,) = rows(db)
    assert row.last_status is not None and b"open" in row.last_status


def test_a_restarted_shard_takes_its_dialogs_back_without_sip(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        second = await restarted(db)
        assert second.m.store_dialogs.labels("restored").value == 1
        (usage,) = second.h.engine
        assert usage.state is State.CONFIRMED
        assert second.h.sent == []
        await second.persistence.close(forget=False)

    run(body)


def test_a_restored_dialog_keeps_its_id_and_needs_no_index_by_call_id(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        first = Shard(db)
        await first.persistence.start()
        first.fanout.subscribe(1, 9, "presence", "sip:carol@example.com", SUBSCRIBER)  # id 1
        call_id = first.established().get("Call-ID") or ""  # id 2
        await first.persistence.close(forget=False)
        second = Shard(db)
        await second.persistence.start()
        engine = second.h.engine
        assert dialog_id_in(call_id) == 2
        assert [u.sub_id for u in engine] == [2]
        assert engine.dialogs.by_call_id == 0
        await second.persistence.close(forget=False)

    run(body)


def test_a_client_asking_again_joins_the_restored_dialog_with_its_last_status(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        second = await restarted(db)
        second.fanout.subscribe(7, 70, *KEY)
        (entry,) = second.fanout.dialogs.values()
        assert (7, 70) in entry.interests
        last = entry.last_parsed
        assert isinstance(last, Status)
        assert last.state is SubscriptionState.ACTIVE
        assert last.presentity is not None
        assert second.h.sent == []
        await second.persistence.close(forget=False)

    run(body)


def test_a_restored_dialog_nobody_asks_for_is_unsubscribed_after_the_grace(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        second = await restarted(db, grace=0.05)
        await asyncio.sleep(0.2)
        (unsub,) = second.h.requests()
        assert unsub.get("Expires") == "0"
        assert second.m.store_dialogs.labels("dropped").value == 1
        await second.persistence.close(forget=False)

    run(body)


def test_a_restored_dialog_a_client_joined_outlives_the_grace(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        second = await restarted(db, grace=0.05)
        second.fanout.subscribe(7, 70, *KEY)
        await asyncio.sleep(0.2)
        assert second.h.sent == []
        await second.persistence.close(forget=False)

    run(body)


def test_an_ended_dialog_leaves_the_store(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        shard = await running(db)
        shard.fanout.unsubscribe(1, 10)
        unsub = shard.h.requests()[-1]
        shard.h.feed(response_to(unsub, 200, ("Expires", "0")))
        shard.h.notify(unsub, "terminated;reason=timeout")
        shard.flush()
        await settle()
        assert rows(db) == []
        await shard.persistence.close(forget=False)

    run(body)


def test_closing_to_stop_for_good_leaves_nothing_to_resume(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        shard = await running(db)
        await shard.persistence.close(forget=True)

    run(body)
    assert rows(db) == []


PIDF_AWAY = PIDF_OPEN.replace(b"here", b"away")


async def restarted_with_a_notify_while_loading(db: Path) -> Shard:
    """A restarted shard (as ``restarted``) that receives a NOTIFY of its stored
    dialog while its store is still loading the rows: what a notifier streaming
    to a killed shard sends once the new process has bound its socket."""
    first = Shard(db)
    await first.persistence.start()
    request = first.established()
    await first.persistence.close(forget=False)
    second = Shard(db)
    second.h.notify_cseq = 10  # the notifier's next NOTIFY
    store = second.persistence.store
    load = store.start

    async def notified_while_loading() -> list[DialogRecord]:
        records = await load()
        second.h.notify(request, "active;expires=600", PIDF_AWAY)
        return records

    store.start = notified_while_loading  # type: ignore[method-assign]
    await second.persistence.start()
    return second


def test_a_notify_that_arrives_while_the_store_loads_is_answered_from_its_restored_dialog(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        second = await restarted_with_a_notify_while_loading(db)
        (answer,) = second.h.responses()
        assert answer.status == 200
        assert answer.get("CSeq") == "11 NOTIFY"
        (usage,) = second.h.engine
        assert usage.state is State.CONFIRMED
        await second.persistence.close(forget=False)

    run(body)


def test_a_notify_held_while_the_store_loads_reaches_the_client_that_asks_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        second = await restarted_with_a_notify_while_loading(db)
        second.fanout.subscribe(7, 70, *KEY)
        (entry,) = second.fanout.dialogs.values()
        last = entry.last_parsed
        assert isinstance(last, Status)
        assert last.body == PIDF_AWAY
        await second.persistence.close(forget=False)

    run(body)


def test_a_notify_of_no_stored_dialog_is_refused_once_the_store_has_loaded(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        shard = Shard(db)
        stranger = probe("NOTIFY", ("Event", "presence"), ("Subscription-State", "active"))
        store = shard.persistence.store
        load = store.start

        async def notified_while_loading() -> list[DialogRecord]:
            records = await load()
            shard.h.feed(stranger)
            assert shard.h.responses() == []  # held, not refused yet
            return records

        store.start = notified_while_loading  # type: ignore[method-assign]
        await shard.persistence.start()
        (answer,) = shard.h.responses()
        assert answer.status == 481
        await shard.persistence.close(forget=False)

    run(body)


def test_a_store_opened_late_gets_the_dialogs_held_before_it_without_waking_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        shard = Shard(db)
        shard.h.engine.changes = None  # as a shard runs while its store cannot be opened
        first = shard.established()
        shard.h.advance(shard.h.engine.rest_after + 2)
        assert isinstance(shard.h.engine.usages[1], RestingUsage)
        await shard.persistence.start(late=True)
        await settle()
        (row,) = rows(db)
        assert row.call_id == first.get("Call-ID")
        assert isinstance(shard.h.engine.usages[1], RestingUsage)

    run(body)



def test_a_resource_lists_statuses_come_back_with_its_dialog(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body() -> None:
        first = Shard(db)
        await first.persistence.start()
        request = first.established()
        (entry,) = first.fanout.dialogs.values()
        for resource, note in (("sip:x@example.com", "x1"), ("sip:y@example.com", "y1")):
            first.fanout.deliver(Status(
                entry.did, SubscriptionState.ACTIVE, note, list=RECORD, resource=resource
            ))
        first.h.notify(request, "active;expires=600", PIDF_OPEN)  # a change to write
        first.flush()
        await first.persistence.close(forget=False)

        second = Shard(db)
        await second.persistence.start()
        (restored,) = second.fanout.dialogs.values()
        told = restored.known()
        resources = [m for m in told if isinstance(m, Status) and m.resource]
        assert sorted((m.resource, m.reason, m.id) for m in resources) == [
            ("sip:x@example.com", "x1", restored.did),
            ("sip:y@example.com", "y1", restored.did),
        ]
        last = told[-1]
        assert isinstance(last, Status) and not last.resource and last.presentity is not None
        await second.persistence.close(forget=False)

    run(body)
