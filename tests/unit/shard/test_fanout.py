"""FanOut: one dialog per (package, record, subscriber), statuses to every client that
asked, through real status rings; newest-wins merging when a client's ring is full."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator

import msgspec
import pytest
from presence_b2b.ipc.messages import decode_status
from presence_b2b.ipc.ring import Ring, RingReader
from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.presence.body import decode_body
from presence_b2b.presence.status import (
    Failure,
    FailureKind,
    Status,
    StatusMessage,
    SubscriptionState,
)
from presence_b2b.shard.fanout import (
    RECENT_SUBSCRIBERS,
    DialogEntry,
    FanOut,
    Outbox,
    SharedSubscribers,
)
from presence_b2b.shard.output import Output

from presence_b2b.packed_map import PackedIdMap

ACTIVE = SubscriptionState.ACTIVE
TERMINATED = SubscriptionState.TERMINATED
RECORD = "sip:bob@example.com"
WATCHER = "sip:alice@example.com"
BIG = b"x" * 900
"""A body that makes four statuses fill a 4 KiB ring."""
SAFETY = 5.0
"""Seconds after which an outbox that should have emptied fails the test."""


class FakeEngine:
    """What FanOut asks of the engine: start and stop dialogs."""

    def __init__(self) -> None:
        self.started: list[tuple[int, str, str, str]] = []
        self.stopped: list[int] = []

    def start(self, did: int, record: str, subscriber: str, package: str) -> None:
        self.started.append((did, record, subscriber, package))

    def stop(self, did: int) -> None:
        self.stopped.append(did)


class Client:
    """A client's status ring for this shard, read the way the client library does."""

    def __init__(self, capacity: int = 4096) -> None:
        self.ring = Ring.create(capacity)
        self.reader: RingReader = self.ring.reader()

    def read(self) -> list[StatusMessage]:
        out: list[StatusMessage] = []
        while batch := self.reader.read_batch():
            out.extend(decode_status(raw) for raw in batch)
        return out

    async def read_all(self, outbox: Outbox) -> list[StatusMessage]:
        """Read as the client library does, woken by the ring's doorbell, until the
        shard's outbox for this client has written everything it held; then the rest."""
        got: list[StatusMessage] = []
        loop = asyncio.get_running_loop()
        self.reader.attach_reader(loop, lambda batch: got.extend(map(decode_status, batch)))
        try:
            while outbox.task is not None:
                await asyncio.wait_for(asyncio.shield(outbox.task), SAFETY)
        finally:
            self.reader.detach()
        return got + self.read()


class Harness:
    def __init__(self) -> None:
        self.engine = FakeEngine()
        self.metrics = ShardMetrics(MetricsBlock.create("0"))
        self.ended: list[list[tuple[int, int, int]]] = []
        self.fanout = FanOut(self.metrics, self.engine.start, self.engine.stop, self.ended.append)
        self.clients: dict[int, Client] = {}

    def attach(self, client: int, capacity: int = 4096) -> Client:
        c = Client(capacity)
        # The shard gets its own mapping of the client's ring, as over the channel.
        self.fanout.attach(client, Ring.attach(*(os.dup(fd) for fd in c.ring.fds())))
        self.clients[client] = c
        return c

    def did(self, record: str = RECORD, subscriber: str = WATCHER) -> int:
        (entry,) = self.fanout.find(record, subscriber)
        return entry.did

    def close(self) -> None:
        self.fanout.close()
        for c in self.clients.values():
            c.ring.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def active(did: int, note: str = "", body: bytes = b"") -> Status:
    return Status(did, ACTIVE, note, body=body)


def test_identical_subscriptions_from_two_clients_share_one_dialog(h: Harness) -> None:
    a, b = h.attach(1), h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    assert len(h.engine.started) == 1
    h.fanout.deliver(active(h.did(), "lunch"))
    assert [(m.id, m.reason) for m in a.read()] == [(10, "lunch")]
    assert [(m.id, m.reason) for m in b.read()] == [(20, "lunch")]


def test_a_dialog_serving_one_client_holds_no_room_for_more(h: Harness) -> None:
    h.attach(1), h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    entry = h.fanout.dialogs[h.did()]
    assert entry.rare is None
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    assert entry.rare is not None and entry.interests == ((1, 10), (2, 20))
    h.fanout.unsubscribe(2, 20)
    assert entry.rare is None and entry.interests == ((1, 10),)


def test_another_subscriber_or_package_is_another_dialog(h: Harness) -> None:
    h.attach(1)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    h.fanout.subscribe(1, 2, "presence", RECORD, "sip:carol@example.com")
    h.fanout.subscribe(1, 3, "dialog", RECORD, WATCHER)
    assert len(h.engine.started) == 3


def test_a_late_joiner_gets_the_last_status_at_once_and_nobody_else_gets_it_again(
    h: Harness,
) -> None:
    a, b = h.attach(1), h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    h.fanout.deliver(active(h.did(), "first"))
    h.fanout.deliver(active(h.did(), "second"))
    a.read()
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    assert [(m.id, m.reason) for m in b.read()] == [(20, "second")]
    assert a.read() == []
    assert len(h.engine.started) == 1


def test_unsubscribe_tells_the_client_at_once_and_ends_the_dialog_with_the_last_one(
    h: Harness,
) -> None:
    a, b = h.attach(1), h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    did = h.did()

    assert h.fanout.unsubscribe(1, 10)
    (final,) = a.read()
    assert isinstance(final, Status)
    assert (final.id, final.state, final.reason) == (10, TERMINATED, "unsubscribed")
    assert h.engine.stopped == [], "the other client still uses the dialog"
    h.fanout.deliver(active(did, "still here"))
    assert a.read() == []
    assert [m.reason for m in b.read()] == ["still here"]

    assert h.fanout.unsubscribe(2, 20)
    assert h.engine.stopped == [did]
    assert h.ended == [], "an unsubscribe the supervisor sent is not reported back"


def test_a_subscribe_after_the_last_unsubscribe_does_not_join_the_dying_dialog(
    h: Harness,
) -> None:
    h.attach(1)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    h.fanout.unsubscribe(1, 1)
    h.fanout.subscribe(1, 2, "presence", RECORD, WATCHER)
    assert len(h.engine.started) == 2


def test_a_full_ring_keeps_the_newest_status_per_subscription_counting_merges(
    h: Harness,
) -> None:
    c = h.attach(1)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    h.fanout.subscribe(1, 2, "presence", RECORD, "sip:carol@example.com")
    x, y = h.did(RECORD, WATCHER), h.did(RECORD, "sip:carol@example.com")

    async def steps() -> list[StatusMessage]:
        for i in range(10):
            h.fanout.deliver(active(x, f"x{i}", BIG))
        for i in range(3):
            h.fanout.deliver(active(y, f"y{i}", BIG))
        return await c.read_all(h.fanout.outboxes[1])

    got = asyncio.run(steps())
    direct = [m for m in got if m.id == 1 and isinstance(m, Status) and m.merged == 0]
    assert 1 <= len(direct) < 10, "some fitted at once, the rest waited"
    xs = [m for m in got if m.id == 1]
    assert isinstance(xs[-1], Status)
    assert xs[-1].reason == "x9", "the newest one wins"
    assert xs[-1].merged == 10 - len(direct) - 1, "and says how many it replaced"
    ys = [m for m in got if m.id == 2]
    assert len(ys) == 1 and isinstance(ys[0], Status)
    assert (ys[0].reason, ys[0].merged) == ("y2", 2)
    assert h.metrics.qsa_status_merges.value == (10 - len(direct) - 1) + 2


def test_the_final_status_always_arrives_even_through_a_full_ring(h: Harness) -> None:
    c = h.attach(1)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    did = h.did()

    async def steps() -> list[StatusMessage]:
        for i in range(8):
            h.fanout.deliver(active(did, f"s{i}", BIG))
        h.fanout.deliver(Failure(did, FailureKind.TERMINATED, detail="rejected"))
        h.fanout.finished(did)
        return await c.read_all(h.fanout.outboxes[1])

    got = asyncio.run(steps())
    assert isinstance(got[-1], Failure)
    assert (got[-1].id, got[-1].detail, got[-1].retry_in) == (1, "rejected", None)


def test_a_status_put_while_an_older_one_waits_for_room_is_written_after_it(
    h: Harness,
) -> None:
    c = h.attach(1)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    did = h.did()

    async def steps() -> list[StatusMessage]:
        for i in range(6):
            h.fanout.deliver(active(did, f"s{i}", BIG))
        await asyncio.sleep(0)  # the outbox's writer now waits for room for s5
        got = c.read()  # room at last...
        h.fanout.deliver(active(did, "newest", BIG))  # ...and a newer status at once
        return got + await c.read_all(h.fanout.outboxes[1])

    got = asyncio.run(steps())
    assert isinstance(got[-1], Status)
    assert got[-1].reason == "newest", [m.reason for m in got if isinstance(m, Status)]


def test_detach_drops_the_clients_interests_and_ends_dialogs_only_it_used(
    h: Harness,
) -> None:
    h.attach(1)
    b = h.attach(2)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    h.fanout.subscribe(2, 1, "presence", RECORD, WATCHER)
    h.fanout.subscribe(1, 2, "presence", RECORD, "sip:carol@example.com")
    shared, own = h.did(RECORD, WATCHER), h.did(RECORD, "sip:carol@example.com")

    h.fanout.detach(1)
    assert h.engine.stopped == [own]
    assert 1 not in h.fanout.outboxes
    h.fanout.deliver(active(shared, "for the one left"))
    assert [(m.id, m.reason) for m in b.read()] == [(1, "for the one left")]
    (entry,) = h.fanout.find(RECORD, WATCHER)
    assert entry.interests == ((2, 1),)
    assert h.ended == []


def test_a_dialog_that_ends_on_its_own_is_reported_with_each_subs_seq(h: Harness) -> None:
    h.attach(1)
    h.attach(2)
    h.fanout.subscribe(1, 5, "presence", RECORD, WATCHER, seq=41)
    h.fanout.subscribe(2, 6, "presence", RECORD, WATCHER, seq=42)
    did = h.did()
    h.fanout.deliver(Failure(did, FailureKind.TERMINATED, detail="rejected"))
    h.fanout.finished(did)
    assert h.ended == [[(1, 5, 41), (2, 6, 42)]]
    assert len(h.fanout.dialogs) == 0
    assert h.fanout.find() == []


def test_kill_tells_every_client_finally_and_reports_them_ended(h: Harness) -> None:
    a = h.attach(1)
    h.fanout.subscribe(1, 5, "presence", RECORD, WATCHER, seq=7)
    did = h.did()
    assert h.fanout.kill(did, "ended by the operator") == [(1, 5)]
    (msg,) = a.read()
    assert isinstance(msg, Failure) and msg.retry_in is None
    assert h.engine.stopped == [did]
    assert h.ended == [[(1, 5, 7)]]


def test_an_unsubscribe_the_shard_missed_still_gets_its_final_status(h: Harness) -> None:
    a = h.attach(1)
    assert not h.fanout.unsubscribe(1, 9, missed=True)
    (msg,) = a.read()
    assert isinstance(msg, Status)
    assert (msg.id, msg.state, msg.reason) == (9, TERMINATED, "unsubscribed")
    assert h.engine.stopped == []


KEY = ("presence", RECORD, WATCHER)


def test_a_missed_unsubscribe_ends_the_dialog_the_store_gave_back(h: Harness) -> None:
    a = h.attach(1)
    did = h.fanout.restore(KEY, ())
    assert not h.fanout.unsubscribe(1, 9, missed=True, key=KEY)
    assert [(m.id, m.state) for m in a.read()] == [(9, TERMINATED)]
    assert h.engine.stopped == [did]
    assert h.fanout.serving(KEY) is None, "a new subscribe would join a dying dialog"
    assert h.fanout.release_unclaimed([did]) == 0


def test_a_missed_unsubscribe_leaves_a_restored_dialog_another_client_joined(
    h: Harness,
) -> None:
    h.attach(1), h.attach(2)
    did = h.fanout.restore(KEY, ())
    h.fanout.subscribe(2, 4, *KEY)  # the replay's subscriptions come first
    assert not h.fanout.unsubscribe(1, 9, missed=True, key=KEY)
    assert h.engine.stopped == []
    assert h.fanout.serving(KEY) == did


def test_a_missed_unsubscribe_of_another_key_leaves_the_restored_dialog(h: Harness) -> None:
    h.attach(1)
    did = h.fanout.restore(KEY, ())
    h.fanout.unsubscribe(1, 9, missed=True, key=("presence", RECORD, "sip:carol@example.com"))
    assert h.engine.stopped == []
    assert h.fanout.release_unclaimed([did]) == 1


def test_a_restored_dialog_gets_back_the_id_its_call_id_names_if_none_that_high_was_used(
    h: Harness,
) -> None:
    other = ("presence", RECORD, "sip:carol@example.com")
    assert h.fanout.restore(KEY, (), 5) == 5
    assert h.fanout.restore(other, (), 3) == 6, "3 is below an id handed out"
    h.fanout.subscribe(1, 1, "presence", "sip:dave@example.com", WATCHER)
    assert h.engine.started[-1][0] == 7


def test_a_dialog_restored_for_a_key_already_served_is_what_new_subscriptions_join(
    h: Harness,
) -> None:
    first = h.fanout.restore(KEY, ())
    second = h.fanout.restore(KEY, ())
    assert h.fanout.serving(KEY) == second != first
    h.fanout.finished(first)  # the one no longer indexed ends: the index keeps the other
    assert h.fanout.serving(KEY) == second


def test_the_highest_id_a_call_id_can_name_is_indexed(h: Harness) -> None:
    did = h.fanout.restore(KEY, (), 2**60 - 1)
    assert did == 2**60 - 1 and h.fanout.serving(KEY) == did


def test_a_subscription_id_in_use_is_refused_without_touching_the_dialog(h: Harness) -> None:
    a = h.attach(1)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    h.fanout.subscribe(1, 1, "presence", RECORD, "sip:carol@example.com")
    (msg,) = a.read()
    assert isinstance(msg, Failure) and msg.kind == FailureKind.REFUSED
    assert len(h.engine.started) == 1


def test_a_replayed_subscription_first_says_it_is_being_reestablished(h: Harness) -> None:
    a = h.attach(1)
    h.fanout.subscribe(1, 3, "presence", RECORD, WATCHER, replay=True)
    (msg,) = a.read()
    assert isinstance(msg, Status)
    assert (msg.id, msg.state, msg.reason) == (3, SubscriptionState.PENDING, "reestablishing")


def resource_status(did: int, resource: str, note: str = "", **fields: object) -> Status:
    return Status(did, ACTIVE, note, list=RECORD, resource=resource, **fields)  # type: ignore[arg-type]


def test_a_late_joiner_of_a_resource_list_gets_every_resources_last_status(
    h: Harness,
) -> None:
    h.attach(1)
    b = h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    did = h.did()
    h.fanout.deliver(resource_status(did, "sip:x@example.com", "x1"))
    h.fanout.deliver(resource_status(did, "sip:y@example.com", "y1"))
    h.fanout.deliver(resource_status(did, "sip:x@example.com", "x2"))
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    got = b.read()
    assert sorted((m.resource, m.reason) for m in got if isinstance(m, Status)) == [
        ("sip:x@example.com", "x2"),
        ("sip:y@example.com", "y1"),
    ]


def test_a_resource_the_list_removed_is_not_told_to_late_joiners(h: Harness) -> None:
    h.attach(1)
    b = h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    did = h.did()
    h.fanout.deliver(resource_status(did, "sip:x@example.com", "x1"))
    h.fanout.deliver(
        Status(did, TERMINATED, "removed", list=RECORD, resource="sip:x@example.com")
    )
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    assert b.read() == []


def test_a_full_ring_merges_statuses_per_resource_not_per_list(h: Harness) -> None:
    c = h.attach(1)
    h.fanout.subscribe(1, 1, "presence", RECORD, WATCHER)
    did = h.did()

    async def steps() -> list[StatusMessage]:
        for i in range(6):
            h.fanout.deliver(resource_status(did, "sip:x@example.com", f"x{i}", body=BIG))
        h.fanout.deliver(resource_status(did, "sip:y@example.com", "y0", body=BIG))
        return await c.read_all(h.fanout.outboxes[1])

    got = [m for m in asyncio.run(steps()) if isinstance(m, Status)]
    assert got[-1].resource == "sip:y@example.com", "the other resource is not merged away"
    assert [m.reason for m in got if m.resource == "sip:x@example.com"][-1] == "x5"


def test_detach_after_kill_and_unsubscribe_leaves_every_other_clients_interests(
    h: Harness,
) -> None:
    h.attach(1)
    h.attach(2)
    for i in range(50):
        h.fanout.subscribe(2, i, "presence", f"sip:r{i}@example.com", WATCHER)
    h.fanout.subscribe(1, 1, "presence", "sip:r0@example.com", WATCHER)
    h.fanout.subscribe(1, 2, "presence", "sip:solo@example.com", WATCHER)
    h.fanout.subscribe(1, 3, "presence", "sip:other@example.com", WATCHER)
    h.fanout.unsubscribe(1, 2)
    h.fanout.kill(h.did("sip:other@example.com"), "operator")
    h.fanout.detach(1)
    assert h.metrics.subscribers.value == 50
    assert sorted(e.key[1] for e in h.fanout.dialogs.values() if e.interests) == sorted(
        f"sip:r{i}@example.com" for i in range(50)
    )


def test_dialogs_of_one_subscriber_share_its_uri_and_package_name(h: Harness) -> None:
    h.attach(1)
    # As decoded from the channel: equal strings, each a new object.
    for i in range(3):
        h.fanout.subscribe(1, i, "".join(["pres", "ence"]), f"sip:r{i}@x", "".join([WATCHER]))
    entries = list(h.fanout.dialogs.values())
    assert len({id(e.key[0]) for e in entries}) == 1
    assert len({id(e.key[2]) for e in entries}) == 1
    # The engine keeps the same objects, not copies of its own.
    assert all(s[2] is entries[0].key[2] and s[3] is entries[0].key[0] for s in h.engine.started)


def test_a_subscription_after_the_dialog_ended_gets_a_new_dialog_and_the_old_is_not_found(
    h: Harness,
) -> None:
    h.attach(1)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    first = h.did()
    h.fanout.unsubscribe(1, 10)  # the dialog is ending: out of the index
    h.fanout.subscribe(1, 11, "presence", RECORD, WATCHER)
    second = next(d for d in h.fanout.dialogs if d != first)
    assert h.fanout.serving(("presence", RECORD, WATCHER)) == second
    h.fanout.finished(first)  # the old one's end must not unindex the new one
    assert h.fanout.serving(("presence", RECORD, WATCHER)) == second


def test_a_dialog_entry_keeps_its_one_client_subscription_in_its_own_slots() -> None:
    entry = DialogEntry(1, "presence", "sip:r@x", "sip:s@x")
    entry.join(1, 7, 70)
    assert entry.interests == ((1, 7),)
    assert entry.members() == [(1, 7, 70)]
    assert entry.more == ()  # the empty tuple is shared: nothing allocated per dialog


def test_a_dialog_entry_moves_its_next_client_subscription_up_when_the_first_leaves() -> None:
    entry = DialogEntry(1, "presence", "sip:r@x", "sip:s@x")
    entry.join(1, 7, 70)
    entry.join(2, 3, 30)
    entry.join(4, 5, 50)
    entry.leave(1, 7)
    assert entry.members() == [(2, 3, 30), (4, 5, 50)]
    entry.leave(4, 5)
    assert entry.members() == [(2, 3, 30)]
    assert entry.more == ()


def test_a_dialog_entry_whose_last_client_subscription_leaves_serves_nobody() -> None:
    entry = DialogEntry(1, "presence", "sip:r@x", "sip:s@x")
    entry.join(1, 7, 70)
    entry.leave(1, 7)
    assert not entry.serves
    assert entry.interests == ()
    assert entry.members() == []


def test_a_dialog_entry_ignores_the_leaving_of_a_client_subscription_it_does_not_serve() -> None:
    entry = DialogEntry(1, "presence", "sip:r@x", "sip:s@x")
    entry.join(1, 7, 70)
    entry.leave(1, 8)
    entry.leave(2, 7)
    assert entry.members() == [(1, 7, 70)]


PIDF_AWAY = (
    b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'entity="sip:bob@example.com"><tuple id="t"><status><basic>closed</basic></status>'
    b"</tuple><note>away</note></presence>"
)


def parsed(did: int, body: bytes = PIDF_AWAY) -> Status:
    presentity, error = decode_body("application/pidf+xml", body)
    return Status(
        did, ACTIVE, presentity=presentity, content_type="application/pidf+xml",
        body=body, error=error,
    )


def test_a_dialog_keeps_its_last_status_without_the_parsed_document() -> None:
    entry = DialogEntry(1, "presence", RECORD, WATCHER)
    entry.remember(parsed(1))
    assert isinstance(entry.last, Status)
    assert entry.last.presentity is None and entry.last.body == PIDF_AWAY


def test_a_late_joiner_gets_the_last_status_parsed_as_it_was_delivered(h: Harness) -> None:
    a, b = h.attach(1), h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    h.fanout.deliver(parsed(h.did()))
    [first] = a.read()
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    [joined] = b.read()
    assert isinstance(first, Status) and isinstance(joined, Status)
    assert joined.presentity == first.presentity and joined.presentity is not None
    assert msgspec.structs.replace(joined, id=10) == first


def test_a_late_joiner_of_an_unreadable_body_gets_its_error_and_no_document(
    h: Harness,
) -> None:
    b = h.attach(2)
    h.attach(1)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    h.fanout.deliver(parsed(h.did(), b"<presence"))
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    [joined] = b.read()
    assert isinstance(joined, Status)
    assert joined.presentity is None and joined.error and joined.body == b"<presence"


def test_statuses_of_one_turn_of_the_loop_ring_a_clients_doorbell_once() -> None:
    owed: list[Callable[[], None]] = []
    engine = FakeEngine()
    fanout = FanOut(ShardMetrics(MetricsBlock.create("0")), engine.start, engine.stop,
                    wake_later=owed.append)
    client = Client()
    fanout.attach(1, Ring.attach(*(os.dup(fd) for fd in client.ring.fds())))
    try:
        for sub_id in (10, 11, 12):
            fanout.subscribe(1, sub_id, "presence", f"sip:r{sub_id}@example.com", WATCHER)
        assert client.reader.prepare_sleep()
        for entry in list(fanout.dialogs.values()):
            fanout.deliver(active(entry.did))
        assert len(owed) == 1
        assert [m.id for m in client.read()] == [10, 11, 12]
    finally:
        fanout.close()
        client.ring.close()


# ---------------------------------------------------------------- at rest


def test_a_dialog_at_rest_keeps_its_last_status_packed_and_a_joiner_gets_it_parsed(
    h: Harness,
) -> None:
    a, b = h.attach(1), h.attach(2)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    h.fanout.deliver(parsed(h.did()))
    [first] = a.read()
    h.fanout.consume(Output(rested=[h.did()]))
    assert isinstance(h.fanout.dialogs[h.did()].kept, PackedIdMap)
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    [joined] = b.read()
    assert isinstance(joined, Status) and joined.presentity is not None
    assert msgspec.structs.replace(joined, id=10) == first


def test_a_status_after_rest_replaces_the_packed_one(h: Harness) -> None:
    h.attach(1)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    h.fanout.deliver(active(h.did(), "old"))
    h.fanout.rest(h.did())
    h.fanout.deliver(active(h.did(), "new"))
    entry = h.fanout.dialogs[h.did()]
    assert entry.kept == active(h.did(), "new")
    assert h.did() not in h.fanout._packed


def test_the_packed_status_of_a_dialog_goes_with_the_dialog(h: Harness) -> None:
    h.attach(1)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    did = h.did()
    h.fanout.deliver(active(did, "old"))
    h.fanout.rest(did)
    assert did in h.fanout._packed
    h.fanout.finished(did)
    assert did not in h.fanout._packed


def test_a_failure_kept_at_rest_is_told_to_a_joiner_unchanged(h: Harness) -> None:
    b = h.attach(2)
    h.attach(1)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    failure = Failure(h.did(), FailureKind.SIP_ERROR, code=403, detail="Forbidden", retry_in=30.0)
    h.fanout.deliver(failure)
    h.fanout.rest(h.did())
    h.fanout.subscribe(2, 20, "presence", RECORD, WATCHER)
    assert b.read() == [msgspec.structs.replace(failure, id=20)]


def test_a_resource_lists_statuses_are_not_packed(h: Harness) -> None:
    h.attach(1)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    did = h.did()
    h.fanout.deliver(resource_status(did, "sip:carol@example.com", "here"))
    h.fanout.deliver(Status(did, ACTIVE, list=RECORD))
    h.fanout.rest(did)
    assert isinstance(h.fanout.dialogs[did].kept, Status)


def test_a_status_that_cannot_be_packed_is_kept_as_it_was(h: Harness) -> None:
    h.attach(1)
    h.fanout.subscribe(1, 10, "presence", RECORD, WATCHER)
    odd = active(h.did(), "\udcff")  # a lone surrogate: no encoder takes it
    h.fanout.dialogs[h.did()].remember(odd)
    h.fanout.rest(h.did())
    assert h.fanout.dialogs[h.did()].kept is odd


def test_the_rest_of_a_dialog_the_fanout_does_not_know_is_ignored(h: Harness) -> None:
    h.fanout.rest(12345)
    assert not h.fanout.dialogs


# ---------------------------------------------------------------- shared strings


def test_the_dialogs_of_a_watchers_buddies_share_one_subscriber_string(h: Harness) -> None:
    h.attach(1)
    for i in range(3):
        h.fanout.subscribe(1, 10 + i, "presence", f"sip:buddy{i}@example.com", "".join(WATCHER))
    subscribers = [e.subscriber for e in h.fanout.dialogs.values()]
    assert len(subscribers) == 3 and all(s is subscribers[0] for s in subscribers)


def test_the_subscribers_remembered_for_sharing_are_bounded() -> None:
    shared = SharedSubscribers()
    for i in range(RECENT_SUBSCRIBERS * 3):
        shared.key("presence", "sip:r@example.com", f"sip:w{i}@example.com")
    assert len(shared._recent) <= RECENT_SUBSCRIBERS
    first = shared.key("presence", "sip:r@example.com", "".join("sip:w@example.com"))
    again = shared.key("dialog", "sip:q@example.com", "".join("sip:w@example.com"))
    assert first[2] is again[2] and first[0] == "presence" and again[0] == "dialog"
