"""DialogStore on the embedded SQLite store: what is written when, and where."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from presence_b2b.store.buffer import Batch
from presence_b2b.store.connect import open_backend
from presence_b2b.store.driver import DialogStore, WriteOutcome
from presence_b2b.store.record import CSEQ_BLOCK, Change, DialogRecord


def dialog(n: int = 1, **changes: object) -> DialogRecord:
    values: dict[str, object] = dict(
        package="presence", record=f"sip:r{n}@x", subscriber="sip:s@y", call_id=f"c{n}",
        local_tag="l", remote_tag=None, local_cseq=1, route_set=(), remote_target="sip:t@z",
        expires_at=2e9, refresh_at=2e9, last_status=None, cseq_high=CSEQ_BLOCK + 1,
    )  # fmt: skip
    values.update(changes)
    return DialogRecord(**values)  # type: ignore[arg-type]


def stored_cseqs(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT record, local_cseq FROM dialogs").fetchall())


def run(path: Path, body: Callable[[DialogStore], Awaitable[None]], interval: float = 10.0) -> None:
    async def main() -> None:
        store = DialogStore(
            lambda: open_backend(f"sqlite:///{path}", node="n"),
            shard=0, shards=1, interval=interval, lease_seconds=10, keeper=True,
        )  # fmt: skip
        await store.start()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_a_created_dialog_is_on_disk_when_put_now_returns(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body(store: DialogStore) -> None:
        assert await store.put_now(dialog(), Change.CREATED) is WriteOutcome.WRITTEN
        assert stored_cseqs(db) == {"sip:r1@x": 1}

    run(db, body)


def test_a_routine_change_waits_for_the_interval(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body(store: DialogStore) -> None:
        await store.put_now(dialog(), Change.CREATED)
        store.put(dialog(local_cseq=2))
        await asyncio.sleep(0.1)
        assert stored_cseqs(db) == {"sip:r1@x": 1}
        await asyncio.sleep(0.4)
        assert stored_cseqs(db) == {"sip:r1@x": 2}

    run(db, body, interval=0.3)


def test_a_confirmation_is_written_without_waiting_for_the_interval(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body(store: DialogStore) -> None:
        store.put(dialog(local_cseq=2, remote_tag="t"), Change.CONFIRMED)
        for _ in range(50):
            await asyncio.sleep(0.02)
            if stored_cseqs(db):
                break
        assert stored_cseqs(db) == {"sip:r1@x": 2}

    run(db, body, interval=60.0)


def test_close_writes_what_was_still_waiting(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body(store: DialogStore) -> None:
        store.put(dialog(local_cseq=7))

    run(db, body, interval=60.0)
    assert stored_cseqs(db) == {"sip:r1@x": 7}


def test_a_terminated_dialog_is_gone_when_delete_now_returns(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body(store: DialogStore) -> None:
        await store.put_now(dialog(1))
        await store.put_now(dialog(2))
        await store.delete_now(dialog(1).key)
        assert set(stored_cseqs(db)) == {"sip:r2@x"}

    run(db, body)


def test_a_cseq_above_the_reserved_block_must_be_reserved_first(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def body(store: DialogStore) -> None:
        beyond = dialog(local_cseq=CSEQ_BLOCK + 2)
        with pytest.raises(ValueError, match="reserve"):
            store.put(beyond)
        reserved, outcome = await store.reserve(dialog(), CSEQ_BLOCK + 2)
        assert outcome is WriteOutcome.WRITTEN
        assert reserved.cseq_high == 2 * CSEQ_BLOCK + 2
        store.put(beyond.with_cseq_reserved(CSEQ_BLOCK + 2))

    run(db, body)


def test_a_restarted_shard_gets_its_dialogs_back_ready_to_resume(tmp_path: Path) -> None:
    db = tmp_path / "d.db"

    async def first(store: DialogStore) -> None:
        await store.put_now(dialog(local_cseq=4), Change.CREATED)

    run(db, first)

    async def again() -> list[DialogRecord]:
        store = DialogStore(
            lambda: open_backend(f"sqlite:///{db}", node="n"),
            shard=0, shards=1, interval=1.0, lease_seconds=10, keeper=True,
        )  # fmt: skip
        records = await store.start()
        assert store.owns(dialog().key)
        await store.close()
        return records

    (restored,) = asyncio.run(again())
    assert restored.call_id == "c1"
    assert restored.local_cseq == 4 + CSEQ_BLOCK  # above anything the last run sent


def test_batches_are_written_on_the_store_thread_not_the_event_loop(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    writers: list[int] = []

    def spying_backend() -> object:
        backend = open_backend(f"sqlite:///{db}", node="n")
        write = backend.write

        def spy(batch: Batch, epochs: dict[int, int]) -> frozenset[int]:
            writers.append(threading.get_ident())
            return write(batch, epochs)

        backend.write = spy  # type: ignore[method-assign]
        return backend

    async def main() -> None:
        store = DialogStore(
            spying_backend,  # type: ignore[arg-type]
            shard=0, shards=1, interval=1.0, lease_seconds=10, keeper=True,
        )  # fmt: skip
        await store.start()
        await store.put_now(dialog())
        await store.close()

    asyncio.run(main())
    assert writers and threading.get_ident() not in writers


def test_rows_are_counted_by_how_they_were_written_and_each_batch_is_timed(
    tmp_path: Path,
) -> None:
    durations: list[float] = []

    async def main() -> DialogStore:
        store = DialogStore(
            lambda: open_backend(f"sqlite:///{tmp_path / 'd.db'}", node="n"),
            shard=0, shards=1, interval=60.0, lease_seconds=10, keeper=True,
            on_batch=durations.append,
        )  # fmt: skip
        await store.start()
        await store.put_now(dialog(1))
        store.put(dialog(2))
        store.put(dialog(3))
        await store.flush()
        await store.close()
        return store

    stats = asyncio.run(main()).stats
    assert (stats.rows_synchronous, stats.rows_batched) == (1, 2)
    assert len(durations) == 2 and all(d > 0 for d in durations)


def test_the_embedded_store_makes_its_directory_when_it_is_missing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "presence-b2b" / "dialogs.db"

    async def body(store: DialogStore) -> None:
        await store.put_now(dialog())

    run(db, body)
    assert stored_cseqs(db) == {"sip:r1@x": 1}


def test_a_write_the_database_cannot_take_is_deferred_and_kept(tmp_path: Path) -> None:
    from presence_b2b.store.backend import StoreUnavailableError

    down = True

    def flaky() -> object:
        backend = open_backend(f"sqlite:///{tmp_path / 'd.db'}", node="n")
        write = backend.write

        def maybe(batch: Batch, epochs: dict[int, int]) -> frozenset[int]:
            if down:
                raise StoreUnavailableError("away")
            return write(batch, epochs)

        backend.write = maybe  # type: ignore[method-assign]
        return backend

    async def main() -> WriteOutcome:
        nonlocal down
        store = DialogStore(
            flaky,  # type: ignore[arg-type]
            shard=0, shards=1, interval=60.0, lease_seconds=10, keeper=True,
        )  # fmt: skip
        await store.start()
        outcome = await store.put_now(dialog())
        assert len(store.buffer) == 1
        down = False
        await store.close()
        return outcome

    assert asyncio.run(main()) is WriteOutcome.DEFERRED
    assert stored_cseqs(tmp_path / "d.db") == {"sip:r1@x": 1}


def _open_and_close(path: str) -> str:
    try:
        open_backend(f"sqlite:///{path}", node="n").close()
    except Exception as exc:  # reported to the test, not raised in the child
        return repr(exc)
    return "ok"


def test_the_shards_of_one_start_all_open_a_new_embedded_store(tmp_path: Path) -> None:
    """Switching a new file to WAL is refused at once, not waited for, while another
    shard holds the lock: every shard must still get the store."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for attempt in range(20):
        path = str(tmp_path / f"start{attempt}" / "dialogs.db")
        with ctx.Pool(4) as pool:
            assert pool.map(_open_and_close, [path] * 4) == ["ok"] * 4
