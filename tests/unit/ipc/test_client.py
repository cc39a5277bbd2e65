"""The client library against a real ControlServer and an in-process "echo shard".

The echo shard reads the request ring of each connected client and answers
every Subscribe with an active Status (and every Unsubscribe with the final
terminated one) in the status ring of shard ``id % shards``: real rings, real
fds, real doorbells; nothing mocked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop
from presence_b2b.cli import watch
from presence_b2b.ipc import messages as m
from presence_b2b.ipc.client import (
    BlockingQsaClient,
    ClosedError,
    ConnectError,
    QsaClient,
    QsaTimeoutError,
    RefusedError,
    admin,
)
from presence_b2b.ipc.control import ConnectedClient, ControlServer, Peer
from presence_b2b.presence.document import Note, PresenceTuple, Presentity
from presence_b2b.presence.status import (
    Failure,
    FailureKind,
    Status,
    StatusMessage,
    SubscriptionState,
)

SHARDS = 2
PIDF = b'<?xml version="1.0"?><presence entity="sip:b@x"/>'


class EchoShard:
    """Plays the supervisor and every shard of the service, in this process."""

    def __init__(self, *, reading: bool = True) -> None:
        self.reading = reading
        self.clients: dict[int, ConnectedClient] = {}
        self.gone: list[ConnectedClient] = []
        self.requests: list[m.Request] = []

    def on_client(self, client: ConnectedClient) -> None:
        self.clients[client.id] = client
        if self.reading:
            loop = asyncio.get_running_loop()
            client.requests.attach_reader(loop, functools.partial(self._on_requests, client))

    def on_client_gone(self, client: ConnectedClient) -> None:
        self.clients.pop(client.id, None)
        self.gone.append(client)

    async def on_admin(self, request: m.AdminRequest, peer: Peer) -> m.AdminReply:
        return m.AdminReply(ok=True, data={"clients": len(self.clients), **request.args})

    def _on_requests(self, client: ConnectedClient, batch: list[bytes]) -> None:
        for raw in batch:
            msg = m.decode_request(raw)
            self.requests.append(msg)
            if isinstance(msg, m.Subscribe):
                status = Status(
                    id=msg.id,
                    state=SubscriptionState.ACTIVE,
                    presentity=Presentity(
                        entity=msg.record,
                        tuples=(PresenceTuple(id="t1", basic="open", notes=(Note("here"),)),),
                    ),
                    content_type="application/pidf+xml",
                    body=PIDF,
                )
            else:
                status = Status(
                    id=msg.id, state=SubscriptionState.TERMINATED, reason="unsubscribed"
                )
            self.send(client, status)

    def send(self, client: ConnectedClient, message: StatusMessage) -> None:
        writer = client.status_writer(message.id % len(client.status_rings))
        assert writer.try_write(m.encode(message))


@pytest.fixture
def sock_path() -> Iterator[str]:
    base = tempfile.mkdtemp(prefix="qsa-client-test-")
    yield os.path.join(base, "qsa.sock")
    shutil.rmtree(base, ignore_errors=True)


def run(coro: Coroutine[Any, Any, None]) -> None:
    uvloop.run(coro)


def make_server(path: str, shard: EchoShard, **kw: Any) -> ControlServer:
    return ControlServer(
        path, shard, shards=SHARDS, request_ring_bytes=4096, status_ring_bytes=8192, **kw
    )


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- basics


def test_subscribe_yields_a_status_with_the_record_and_subscriber(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, EchoShard()), QsaClient(sock_path) as client:
            sub_id = await client.subscribe("sip:bob@b.example", "sip:alice@a.example")
            event = await client.next_event(5)
            assert event is not None
            assert (event.id, event.record, event.subscriber) == (
                sub_id,
                "sip:bob@b.example",
                "sip:alice@a.example",
            )
            assert event.kind == "status"
            assert isinstance(event.message, Status)
            assert event.message.body == PIDF

    run(main())


def test_ids_are_unique_and_events_arrive_from_every_shard(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, EchoShard()), QsaClient(sock_path) as client:
            ids = [await client.subscribe(f"sip:u{i}@x", "sip:a@x") for i in range(10)]
            assert len(set(ids)) == 10
            seen = set()
            async for event in client.events():
                seen.add(event.id)
                assert event.record == f"sip:u{ids.index(event.id)}@x"
                if len(seen) == 10:
                    break
            assert seen == set(ids)

    run(main())


def test_unsubscribe_delivers_the_final_status_then_forgets_the_id(sock_path: str) -> None:
    async def main() -> None:
        shard = EchoShard()
        async with make_server(sock_path, shard), QsaClient(sock_path) as client:
            sub_id = await client.subscribe("sip:b@x", "sip:a@x")
            assert await client.next_event(5) is not None
            await client.unsubscribe(sub_id)
            final = await client.next_event(5)
            assert final is not None
            assert final.record == "sip:b@x"
            assert isinstance(final.message, Status)
            assert final.message.reason == "unsubscribed"
            assert client.subscriptions == {}
            # a late status for the forgotten id is counted, not delivered
            [server_side] = shard.clients.values()
            shard.send(server_side, Status(id=sub_id, state=SubscriptionState.ACTIVE))
            assert await client.next_event(0.2) is None
            assert client.unknown_ids == 1

    run(main())


def test_final_failure_ends_the_subscription(sock_path: str) -> None:
    async def main() -> None:
        shard = EchoShard()
        async with make_server(sock_path, shard), QsaClient(sock_path) as client:
            sub_id = await client.subscribe("sip:b@x", "sip:a@x")
            await client.next_event(5)
            [server_side] = shard.clients.values()
            shard.send(server_side, Failure(id=sub_id, kind=FailureKind.SIP_ERROR, code=403))
            event = await client.next_event(5)
            assert event is not None
            assert event.kind == "error"
            assert sub_id not in client.subscriptions

    run(main())


def test_undecodable_status_records_are_counted_and_skipped(sock_path: str) -> None:
    async def main() -> None:
        shard = EchoShard()
        async with make_server(sock_path, shard), QsaClient(sock_path) as client:
            sub_id = await client.subscribe("sip:b@x", "sip:a@x")
            await client.next_event(5)
            [server_side] = shard.clients.values()
            writer = server_side.status_writer(sub_id % SHARDS)
            writer.try_write(b"\xc1 not msgpack")
            writer.try_write(m.encode(m.Unsubscribe(id=1)))  # valid msgpack, wrong family
            shard.send(server_side, Status(id=sub_id, state=SubscriptionState.PENDING))
            event = await client.next_event(5)
            assert event is not None
            assert isinstance(event.message, Status)
            assert event.message.state == SubscriptionState.PENDING
            assert client.bad_records == 2

    run(main())


def test_works_on_the_plain_asyncio_loop_too(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, EchoShard()), QsaClient(sock_path) as client:
            await client.subscribe("sip:b@x", "sip:a@x")
            assert await client.next_event(5) is not None

    asyncio.run(main())


# ---------------------------------------------------------------- failures


def test_missing_socket_raises_connect_error(sock_path: str) -> None:
    async def main() -> None:
        with pytest.raises(ConnectError, match="cannot connect"):
            await QsaClient(sock_path).connect()

    run(main())


def test_refusal_reason_reaches_the_caller(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, EchoShard(), max_clients=0):
            with pytest.raises(RefusedError) as info:
                await QsaClient(sock_path).connect()
            assert "too many clients" in info.value.reason

    run(main())


def test_full_request_ring_makes_subscribe_wait_then_time_out(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, EchoShard(reading=False)), QsaClient(sock_path) as c:
            with pytest.raises(QsaTimeoutError, match="request ring"):
                for i in range(1000):
                    await c.subscribe(f"sip:user{i}@example.com", "sip:a@x", timeout=0.2)
            # what could not be sent is not remembered either
            assert len(c.subscriptions) < 1000

    run(main())


def test_full_request_ring_unblocks_when_the_service_reads(sock_path: str) -> None:
    async def main() -> None:
        shard = EchoShard(reading=False)
        async with make_server(sock_path, shard), QsaClient(sock_path) as client:
            count = 0
            with contextlib.suppress(QsaTimeoutError):
                while True:
                    await client.subscribe(f"sip:u{count}@x", "sip:a@x", timeout=0.05)
                    count += 1
            waiting = asyncio.ensure_future(client.subscribe("sip:last@x", "sip:a@x"))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            [server_side] = shard.clients.values()
            server_side.requests.read_batch()
            await asyncio.wait_for(waiting, 5)

    run(main())


def test_closed_client_refuses_requests_and_ends_events(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, EchoShard()):
            client = QsaClient(sock_path)
            await client.connect()
            await client.close()
            assert [e async for e in client.events()] == []
            with pytest.raises(ClosedError):
                await client.subscribe("sip:b@x", "sip:a@x")

    run(main())


# ---------------------------------------------------------------- reconnect


def test_client_reconnects_and_replays_after_the_server_restarts(sock_path: str) -> None:
    async def main() -> None:
        first = EchoShard()
        server = make_server(sock_path, first)
        await server.start()
        async with QsaClient(sock_path) as client:
            keep = await client.subscribe("sip:keep@x", "sip:a@x")
            drop = await client.subscribe("sip:drop@x", "sip:a@x")
            await client.unsubscribe(drop)
            for _ in range(3):
                await client.next_event(5)
            await server.stop()
            await wait_until(lambda: not client.connected)
            second = EchoShard()
            async with make_server(sock_path, second):
                event = await client.next_event(10)
                assert event is not None
                assert (event.id, event.record) == (keep, "sip:keep@x")
                assert client.connected
                assert client.reconnects == 1
                assert second.requests == [
                    m.Subscribe(
                        id=keep, package="presence", record="sip:keep@x", subscriber="sip:a@x"
                    )
                ]
                # new subscriptions keep counting from where they were
                assert await client.subscribe("sip:new@x", "sip:a@x") == drop + 1

    run(main())


def test_subscribe_while_disconnected_is_sent_on_reconnect(sock_path: str) -> None:
    async def main() -> None:
        server = make_server(sock_path, EchoShard())
        await server.start()
        async with QsaClient(sock_path) as client:
            await server.stop()
            await wait_until(lambda: not client.connected)
            sub_id = await client.subscribe("sip:later@x", "sip:a@x")
            async with make_server(sock_path, EchoShard()):
                event = await client.next_event(10)
                assert event is not None
                assert (event.id, event.record) == (sub_id, "sip:later@x")

    run(main())


def test_killed_client_process_is_cleaned_up_by_the_server(sock_path: str) -> None:
    child = (
        "import asyncio, sys\n"
        "from presence_b2b.ipc.client import QsaClient\n"
        "async def main():\n"
        "    c = QsaClient(sys.argv[1])\n"
        "    await c.connect()\n"
        "    await c.subscribe('sip:b@x', 'sip:a@x')\n"
        "    print('ready', flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )

    async def main() -> None:
        shard = EchoShard()
        async with make_server(sock_path, shard) as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", child, sock_path, stdout=subprocess.PIPE
            )
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"ready\n"
            await wait_until(lambda: len(shard.requests) == 1)
            [client] = shard.clients.values()
            proc.kill()
            await proc.wait()
            await wait_until(lambda: shard.gone == [client])
            assert client.request_ring.closed
            assert server.clients == {}

    run(main())


# ---------------------------------------------------------------- blocking, admin


def serve_in_thread(path: str, shard: EchoShard) -> tuple[threading.Thread, Callable[[], None]]:
    """Run a server on its own loop in a thread; returns the thread and a stopper."""
    ready = threading.Event()
    loop = uvloop.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with make_server(path, shard):
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)

    def stopper() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()

    return thread, stopper


def test_blocking_client_subscribes_and_gets_events(sock_path: str) -> None:
    _, stop = serve_in_thread(sock_path, EchoShard())
    try:
        with BlockingQsaClient(sock_path, name="blocking") as client:
            sub_id = client.subscribe("sip:b@x", "sip:a@x")
            event = client.get(5)
            assert event is not None
            assert event.id == sub_id
            assert client.get(0.05) is None
            client.unsubscribe(sub_id)
            final = client.get(5)
            assert final is not None
            assert isinstance(final.message, Status)
            assert final.message.state == SubscriptionState.TERMINATED
    finally:
        stop()


def test_blocking_client_times_out_on_a_full_request_ring(sock_path: str) -> None:
    _, stop = serve_in_thread(sock_path, EchoShard(reading=False))
    try:
        with BlockingQsaClient(sock_path) as client, pytest.raises(QsaTimeoutError):
            for i in range(1000):
                client.subscribe(f"sip:user{i}@example.com", "sip:a@x", timeout=0.1)
    finally:
        stop()


def test_blocking_client_raises_connect_error_without_a_server(sock_path: str) -> None:
    with pytest.raises(ConnectError):
        BlockingQsaClient(sock_path)


def test_admin_helper_round_trips_a_command(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, EchoShard()), QsaClient(sock_path):
            reply = await admin(sock_path, "stats", record="sip:b@x")
            assert reply.ok
            assert reply.data == {"clients": 1, "record": "sip:b@x"}

    run(main())


# ---------------------------------------------------------------- watch


def watch_args(path: str, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    watch.add_arguments(parser)
    return parser.parse_args(
        [
            "sip:bob@b.example",
            "--subscriber",
            "sip:alice@a.example",
            "--control-socket",
            path,
            *extra,
        ]
    )


def test_watch_json_count_2_prints_two_json_lines_and_exits_0(
    sock_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = EchoShard()

    def on_client(client: ConnectedClient) -> None:
        EchoShard.on_client(shard, client)
        # one error (not counted) then a second status after the echoed one
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, shard.send, client, Failure(1, FailureKind.TIMEOUT, retry_in=30.0))
        loop.call_later(0.2, shard.send, client, Status(1, SubscriptionState.ACTIVE, "x"))

    shard.on_client = on_client  # type: ignore[method-assign]
    _, stop = serve_in_thread(sock_path, shard)
    try:
        code = watch.run(watch_args(sock_path, "--json", "--count", "2", "--timeout", "10"))
    finally:
        stop()
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert [r["kind"] for r in records] == ["status", "error", "status"]
    first = records[0]
    assert first["record"] == "sip:bob@b.example"
    assert first["subscriber"] == "sip:alice@a.example"
    assert first["state"] == "active"
    assert first["basic"] == "open"
    assert first["notes"] == ["here"]
    assert first["tuples"][0]["id"] == "t1"
    assert first["content_type"] == "application/pidf+xml"
    assert first["body"] == PIDF.decode()
    assert records[1]["error_kind"] == "timeout"
    assert records[1]["retry_in"] == 30.0
    # it unsubscribed before leaving
    assert isinstance(shard.requests[-1], m.Unsubscribe)


def test_watch_against_a_missing_socket_exits_2_with_a_message(
    sock_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert watch.run(watch_args(sock_path)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert sock_path in err


def test_watch_exits_1_when_the_timeout_expires_before_the_count(
    sock_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, stop = serve_in_thread(sock_path, EchoShard())
    try:
        code = watch.run(watch_args(sock_path, "--count", "5", "--timeout", "0.5"))
    finally:
        stop()
    out, err = capsys.readouterr()
    assert code == 1
    assert len(out.splitlines()) == 1  # the one status the echo shard sent
    assert "timeout" in err


def test_watch_human_output_is_one_line_per_status(
    sock_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, stop = serve_in_thread(sock_path, EchoShard())
    try:
        assert watch.run(watch_args(sock_path, "--count", "1")) == 0
    finally:
        stop()
    [line] = capsys.readouterr().out.splitlines()
    assert "sip:bob@b.example" in line
    assert "open" in line


def test_watch_exits_0_on_sigterm(sock_path: str) -> None:
    _, stop = serve_in_thread(sock_path, EchoShard())
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, argparse\n"
                "from presence_b2b.cli import watch\n"
                "p = argparse.ArgumentParser(); watch.add_arguments(p)\n"
                "sys.exit(watch.run(p.parse_args(sys.argv[1:])))\n",
                "sip:b@x",
                "--subscriber",
                "sip:a@x",
                "--control-socket",
                sock_path,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert "sip:b@x" in proc.stdout.readline()
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        stop()
