"""The control socket server: admission by SO_PEERCRED, handshake, liveness, abuse.

Peers other than root run in forked children that drop privileges with
os.setuid and speak the protocol with plain blocking sockets, so nothing of the
parent's event loop is touched after the fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvloop
from presence_b2b.ipc import messages as m
from presence_b2b.ipc.control import ConnectedClient, ControlServer, Peer
from presence_b2b.ipc.fdpass import close_fds, recv_fds, send_fds
from presence_b2b.ipc.ring import Ring

NOBODY = 65534
SHARDS = 2


class Owner:
    """Records what the server reports; answers admin commands by echoing them."""

    def __init__(self) -> None:
        self.clients: list[ConnectedClient] = []
        self.gone: list[ConnectedClient] = []
        self.admin_peers: list[Peer] = []

    def on_client(self, client: ConnectedClient) -> None:
        self.clients.append(client)

    def on_client_gone(self, client: ConnectedClient) -> None:
        self.gone.append(client)

    async def on_admin(self, request: m.AdminRequest, peer: Peer) -> m.AdminReply:
        self.admin_peers.append(peer)
        if request.command == "boom":
            raise RuntimeError("owner bug")
        if request.command == "big":
            return m.AdminReply(ok=True, data=[f"sip:user{i}@example.com" for i in range(20000)])
        return m.AdminReply(ok=True, data={"command": request.command, "args": request.args})


@pytest.fixture
def sock_path() -> Iterator[str]:
    # Not under tmp_path, whose parents are 0700: children running as nobody
    # must reach the socket so that the credential check is what decides.
    base = tempfile.mkdtemp(prefix="qsa-test-")
    os.chmod(base, 0o755)
    yield os.path.join(base, "qsa.sock")
    shutil.rmtree(base, ignore_errors=True)


def run(coro: Coroutine[Any, Any, None]) -> None:
    uvloop.run(coro)


def make_server(path: str, owner: Owner, **kw: Any) -> ControlServer:
    return ControlServer(
        path, owner, shards=SHARDS, request_ring_bytes=4096, status_ring_bytes=8192, **kw
    )


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def connect_raw(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def hello(role: m.Role = "client") -> bytes:
    return m.encode(m.Hello(version=m.PROTOCOL_VERSION, role=role, name="test"))


def handshake_raw(path: str) -> tuple[socket.socket, m.ControlMessage, list[int]]:
    sock = connect_raw(path)
    sock.send(hello())
    data, fds = recv_fds(sock, m.MAX_CONTROL_PACKET, m.MAX_FDS_PER_PACKET)
    return sock, m.decode_control(data), fds


async def in_child(body: Callable[[int], bytes], timeout: float = 10.0) -> bytes:
    """Run ``body(write_fd)`` in a forked child; return what it returns (via a pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no asyncio from here on
        code = 0
        try:
            os.close(r)
            out = body(w)
            os.write(w, out)
        except BaseException as exc:
            os.write(w, f"child error: {exc!r}".encode())
            code = 1
        os._exit(code)
    os.close(w)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        chunk = os.read(r, 65536)
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(r, readable)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        loop.remove_reader(r)
        os.close(r)
        os.waitpid(pid, 0)
    return b"".join(chunks)


def as_nobody(path: str, *, groups: tuple[int, ...] = ()) -> Callable[[int], bytes]:
    def body(_: int) -> bytes:
        os.setgroups(list(groups))
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        sock, _msg, fds = handshake_raw(path)
        close_fds(fds)
        sock.close()
        return m.encode(_msg)

    return body


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------- binding


def test_socket_is_created_0660_in_a_new_0750_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "qsa.sock"

    async def main() -> None:
        async with make_server(str(path), Owner()):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
        assert not path.exists()

    run(main())


def test_stale_socket_is_replaced(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(sock_path)
    stale.close()

    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            sock, msg, fds = await asyncio.to_thread(handshake_raw, sock_path)
            assert isinstance(msg, m.Welcome)
            close_fds(fds)
            sock.close()

    run(main())


def test_live_socket_is_not_replaced(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner()):
            with pytest.raises(RuntimeError, match="already listening"):
                await make_server(sock_path, Owner()).start()

    run(main())


# ---------------------------------------------------------------- handshake


def test_welcome_carries_request_ring_then_one_ring_per_shard(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            sock, msg, fds = await asyncio.to_thread(handshake_raw, sock_path)
            assert isinstance(msg, m.Welcome)
            assert (msg.shards, msg.fds, len(fds)) == (SHARDS, 3 * (1 + SHARDS), 3 * (1 + SHARDS))
            rings = [Ring.attach(*fds[i : i + 3]) for i in range(0, len(fds), 3)]
            assert [r.capacity for r in rings] == [4096, 8192, 8192]
            await wait_until(lambda: len(owner.clients) == 1)
            client = owner.clients[0]
            assert client.id == msg.client_id
            assert (client.pid, client.uid) == (os.getpid(), 0)
            # The same memory: a record written by "the client" is read by the server.
            rings[0].writer().try_write(b"hello ring")
            assert client.requests.read_batch() == [b"hello ring"]
            client.status_writer(1).try_write(b"status")
            assert rings[2].reader().read_batch() == [b"status"]
            for ring in rings:
                ring.close()
            sock.close()
            await wait_until(lambda: len(owner.gone) == 1)

    run(main())


def test_wrong_protocol_version_is_refused(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner()):
            sock = await asyncio.to_thread(connect_raw, sock_path)
            sock.send(m.encode(m.Hello(version=99, role="client")))
            reply = m.decode_control(await asyncio.to_thread(sock.recv, 65536))
            assert isinstance(reply, m.Refused)
            assert "version 99" in reply.reason
            sock.close()

    run(main())


def test_silent_peer_is_dropped_after_the_handshake_timeout(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner(), handshake_timeout=0.2):
            sock = await asyncio.to_thread(connect_raw, sock_path)
            reply = m.decode_control(await asyncio.to_thread(sock.recv, 65536))
            assert isinstance(reply, m.Refused)
            assert "no hello" in reply.reason
            assert await asyncio.to_thread(sock.recv, 65536) == b""
            sock.close()

    run(main())


def test_too_many_clients_are_refused(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner(), max_clients=1):
            first, msg, fds = await asyncio.to_thread(handshake_raw, sock_path)
            assert isinstance(msg, m.Welcome)
            close_fds(fds)
            second, msg2, _ = await asyncio.to_thread(handshake_raw, sock_path)
            assert isinstance(msg2, m.Refused)
            assert "too many clients" in msg2.reason
            first.close()
            second.close()

    run(main())


# ---------------------------------------------------------------- admission


def test_uid_that_is_not_allowed_is_refused_with_a_clear_reason(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            os.chmod(sock_path, 0o666)  # let the credential check, not the mode, decide
            out = await in_child(as_nobody(sock_path))
            reply = m.decode_control(out)
            assert isinstance(reply, m.Refused), out
            assert reply.reason.startswith(f"uid {NOBODY} is not allowed")
            assert "server.allowed_uids" in reply.reason
            assert owner.clients == []

    run(main())


def test_allowed_uid_is_welcomed(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner(), allowed_uids=[NOBODY]):
            os.chmod(sock_path, 0o666)
            assert isinstance(m.decode_control(await in_child(as_nobody(sock_path))), m.Welcome)

    run(main())


def test_supplementary_group_in_allowed_gids_is_welcomed(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner(), allowed_gids=[4242]):
            os.chmod(sock_path, 0o666)
            out = await in_child(as_nobody(sock_path, groups=(4242,)))
            assert isinstance(m.decode_control(out), m.Welcome), out

    run(main())


# ---------------------------------------------------------------- abuse


@pytest.mark.parametrize(
    "packet",
    [
        b"\xc1\xc1 not msgpack",
        msgspec.msgpack.encode({"type": "hello", "version": "one"}),
        m.encode(m.AdminRequest("stats")),
        b"x" * (m.MAX_CONTROL_PACKET + 100),
    ],
    ids=["garbage", "bad-field", "not-a-hello", "oversize"],
)
def test_bad_first_packet_is_refused_and_other_clients_keep_working(
    sock_path: str, packet: bytes
) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            good, _welcome, fds = await asyncio.to_thread(handshake_raw, sock_path)
            bad = await asyncio.to_thread(connect_raw, sock_path)
            await asyncio.to_thread(bad.send, packet)
            reply = m.decode_control(await asyncio.to_thread(bad.recv, 65536))
            assert isinstance(reply, m.Refused)
            assert await asyncio.to_thread(bad.recv, 65536) == b""
            bad.close()
            # the first client is untouched, and a new one still gets in
            request = Ring.attach(*fds[:3])
            request.writer().try_write(b"still here")
            await wait_until(lambda: len(owner.clients) == 1)
            assert owner.clients[0].requests.read_batch() == [b"still here"]
            assert owner.gone == []
            again, msg, fds2 = await asyncio.to_thread(handshake_raw, sock_path)
            assert isinstance(msg, m.Welcome)
            close_fds(fds[3:] + fds2)
            request.close()
            good.close()
            again.close()

    run(main())


def test_fds_sent_to_the_server_are_refused_and_not_leaked(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner()):
            baseline = open_fd_count()
            sock = await asyncio.to_thread(connect_raw, sock_path)
            r, w = os.pipe()
            send_fds(sock, hello(), [r, w])
            reply = m.decode_control(await asyncio.to_thread(sock.recv, 65536))
            assert isinstance(reply, m.Refused)
            close_fds([r, w])
            sock.close()
            await wait_until(lambda: open_fd_count() == baseline)

    run(main())


def test_packet_after_the_welcome_ends_the_client(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            sock, _, fds = await asyncio.to_thread(handshake_raw, sock_path)
            close_fds(fds)
            sock.send(b"\x00junk")
            await wait_until(lambda: len(owner.gone) == 1)
            sock.close()

    run(main())


# ---------------------------------------------------------------- liveness


def test_killed_client_is_noticed_and_its_rings_freed(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner) as server:
            baseline = open_fd_count()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    held = handshake_raw(sock_path)  # noqa: F841 (keeps the socket open)
                    os.write(w, b"ready")
                    time.sleep(60)
                finally:
                    os._exit(0)
            os.close(w)
            assert await asyncio.to_thread(os.read, r, 5) == b"ready"
            os.close(r)
            await wait_until(lambda: len(owner.clients) == 1)
            client = owner.clients[0]
            assert client.pid == pid
            assert open_fd_count() > baseline
            os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(os.waitpid, pid, 0)
            await wait_until(lambda: owner.gone == [client])
            assert client.request_ring.closed
            assert all(ring.closed for ring in client.status_rings)
            assert server.clients == {}
            await wait_until(lambda: open_fd_count() == baseline)

    run(main())


def test_exit_of_the_connecting_process_is_noticed_through_its_pidfd(sock_path: str) -> None:
    """The socket stays open in a grandchild, so only the pidfd can tell."""

    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    _sock, _, _fds = handshake_raw(sock_path)
                    grandchild = os.fork()
                    if grandchild == 0:
                        time.sleep(30)
                        os._exit(0)
                    os.write(w, str(grandchild).encode())
                finally:
                    os._exit(0)
            os.close(w)
            grandchild = int(await asyncio.to_thread(os.read, r, 32))
            os.close(r)
            await asyncio.to_thread(os.waitpid, pid, 0)
            try:
                await wait_until(lambda: len(owner.gone) == 1)
                assert owner.gone[0].pid == pid
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(grandchild, signal.SIGKILL)

    run(main())


def test_stop_reports_every_connected_client_gone(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        server = make_server(sock_path, owner)
        await server.start()
        sock, _, fds = await asyncio.to_thread(handshake_raw, sock_path)
        close_fds(fds)
        await wait_until(lambda: len(owner.clients) == 1)
        await server.stop()
        assert owner.gone == owner.clients
        assert await asyncio.to_thread(sock.recv, 100) == b""
        sock.close()

    run(main())


# ---------------------------------------------------------------- admin


def admin_roundtrip(path: str, request: m.AdminRequest) -> list[m.AdminReply]:
    sock = connect_raw(path)
    sock.send(hello("admin"))
    sock.send(m.encode(request))
    replies: list[m.AdminReply] = []
    while True:
        reply = m.decode_control(sock.recv(m.MAX_CONTROL_PACKET))
        assert isinstance(reply, m.AdminReply)
        replies.append(reply)
        if not reply.more:
            sock.close()
            return replies


def test_admin_request_reaches_the_owner_with_the_peer(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            request = m.AdminRequest("show", {"record": "sip:b@x"})
            [reply] = await asyncio.to_thread(admin_roundtrip, sock_path, request)
            assert reply.ok
            assert reply.data == {"command": "show", "args": {"record": "sip:b@x"}}
            assert owner.admin_peers[0].pid == os.getpid()
            assert owner.clients == []

    run(main())


def test_admin_hook_exception_becomes_an_error_reply(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner()):
            [reply] = await asyncio.to_thread(admin_roundtrip, sock_path, m.AdminRequest("boom"))
            assert not reply.ok
            assert "owner bug" in reply.error

    run(main())


def test_large_admin_reply_arrives_in_several_packets(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner()):
            replies = await asyncio.to_thread(admin_roundtrip, sock_path, m.AdminRequest("big"))
            assert len(replies) > 1
            assert sum(len(r.data) for r in replies) == 20000

    run(main())


def admin_as_nobody(path: str, *, groups: tuple[int, ...] = ()) -> Callable[[int], bytes]:
    def body(_: int) -> bytes:
        os.setgroups(list(groups))
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        [reply] = admin_roundtrip_or_refusal(path, m.AdminRequest("list"))
        return m.encode(reply)

    return body


def admin_roundtrip_or_refusal(path: str, request: m.AdminRequest) -> list[m.ControlMessage]:
    sock = connect_raw(path)
    sock.send(hello("admin"))
    sock.send(m.encode(request))
    reply = m.decode_control(sock.recv(m.MAX_CONTROL_PACKET))
    sock.close()
    return [reply]


def test_an_admitted_client_that_is_no_admin_is_refused_admin_commands(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner, allowed_uids=[NOBODY]):
            os.chmod(sock_path, 0o666)
            reply = m.decode_control(await in_child(admin_as_nobody(sock_path)))
            assert isinstance(reply, m.Refused), reply
            assert reply.reason == (
                f"uid {NOBODY} may not run admin commands: only root, the service user"
                " and members of server.admin_gids may"
            )
            assert owner.admin_peers == []

    run(main())


def test_a_member_of_admin_gids_may_run_admin_commands(sock_path: str) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner, admin_gids=[4243]):
            os.chmod(sock_path, 0o666)
            reply = m.decode_control(await in_child(admin_as_nobody(sock_path, groups=(4243,))))
            assert isinstance(reply, m.AdminReply) and reply.ok, reply
            assert [p.uid for p in owner.admin_peers] == [NOBODY]

    run(main())


def test_a_uid_over_its_share_of_clients_is_refused_while_others_get_in(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner(), allowed_uids=[NOBODY], max_clients_per_uid=1):
            os.chmod(sock_path, 0o666)
            first, msg, fds = await asyncio.to_thread(handshake_raw, sock_path)
            assert isinstance(msg, m.Welcome)
            second, refused, _ = await asyncio.to_thread(handshake_raw, sock_path)
            assert isinstance(refused, m.Refused)
            assert "server.max_clients_per_uid" in refused.reason
            other = m.decode_control(await in_child(as_nobody(sock_path)))
            assert isinstance(other, m.Welcome), other
            close_fds(fds)
            first.close()
            second.close()

    run(main())


def test_a_uid_over_its_share_of_handshakes_is_closed_at_once_while_others_get_in(
    sock_path: str,
) -> None:
    async def main() -> None:
        async with make_server(
            sock_path, Owner(), allowed_uids=[NOBODY], max_handshakes_per_uid=1
        ) as server:
            os.chmod(sock_path, 0o666)
            silent = await asyncio.to_thread(connect_raw, sock_path)  # holds root's one slot
            await wait_until(lambda: server._handshaking[0] == 1)
            second = await asyncio.to_thread(connect_raw, sock_path)
            refused = m.decode_control(await asyncio.to_thread(second.recv, 65536))
            assert isinstance(refused, m.Refused)
            assert "server.max_handshakes_per_uid" in refused.reason
            other = m.decode_control(await in_child(as_nobody(sock_path)))
            assert isinstance(other, m.Welcome), other
            silent.close()
            second.close()

    run(main())


def test_a_uid_over_its_share_of_admin_sessions_is_refused(sock_path: str) -> None:
    async def main() -> None:
        async with make_server(sock_path, Owner(), max_admin_sessions_per_uid=1):
            held = await asyncio.to_thread(connect_raw, sock_path)
            held.send(hello("admin"))
            held.send(m.encode(m.AdminRequest("stats")))
            assert isinstance(m.decode_control(await asyncio.to_thread(held.recv, 65536)),
                              m.AdminReply)
            [reply] = await asyncio.to_thread(
                admin_roundtrip_or_refusal, sock_path, m.AdminRequest("stats")
            )
            assert isinstance(reply, m.Refused)
            assert "server.max_admin_sessions_per_uid" in reply.reason
            held.close()

    run(main())


def test_a_clients_name_is_kept_and_logged_with_control_characters_escaped(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        owner = Owner()
        async with make_server(sock_path, owner):
            sock = await asyncio.to_thread(connect_raw, sock_path)
            name = "rls\nFAKE: client 9 connected\x00\x1b[2J"
            sock.send(m.encode(m.Hello(version=m.PROTOCOL_VERSION, role="client", name=name)))
            _, fds = await asyncio.to_thread(recv_fds, sock, m.MAX_CONTROL_PACKET, 252)
            await wait_until(lambda: len(owner.clients) == 1)
            assert owner.clients[0].name == "rls\\nFAKE: client 9 connected\\x00\\x1b[2J"
            close_fds(fds)
            sock.close()
            await wait_until(lambda: len(owner.gone) == 1)

    caplog.set_level("INFO")
    run(main())
    assert not [r for r in caplog.records if any(c in r.getMessage() for c in "\n\x00\x1b")]
    assert any("rls\\nFAKE" in r.getMessage() for r in caplog.records)
