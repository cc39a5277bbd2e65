"""The QSA control socket, server side: who may connect, and handing out rings.

A Unix SOCK_SEQPACKET socket is the only door into the service. It decides
who gets in (SO_PEERCRED, never anything the peer says about itself), hands a
client its rings as fds (so no ring ever has a name a stranger could open),
and then stays open as the liveness signal: EOF, or the peer's pidfd becoming
readable, means the client is gone and its subscriptions must be cleaned up.
Nothing here polls a pid with ``kill(pid, 0)``: pids are reused.

Every failure of a peer (silence, garbage, oversize packets, vanishing
mid-handshake) ends that one connection, with a ``Refused`` when the socket
still works. No exception from a peer's behaviour reaches the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import socket
import stat
import struct
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from ..config import ServerSettings
from .fdpass import FdPassError, async_recv_fds, async_send_fds, recv_fds
from .messages import (
    MAX_CONTROL_PACKET,
    MAX_FDS_PER_PACKET,
    PROTOCOL_VERSION,
    AdminReply,
    AdminRequest,
    ControlMessage,
    Hello,
    MoreFds,
    ProtocolError,
    Refused,
    Welcome,
    decode_control,
    encode,
    split_admin_reply,
)
from .ring import Ring, RingReader, RingWriter

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "MAX_ADMIN_CONNECTIONS",
    "MAX_CLIENTS",
    "MAX_HANDSHAKES",
    "MAX_NAME_CHARS",
    "ConnectedClient",
    "ControlOwner",
    "ControlServer",
    "Peer",
    "printable_name",
    "read_groups",
]

log = logging.getLogger(__name__)

MAX_CLIENTS: Final = 1024
"""Connected clients at once; each holds 3 * (1 + shards) fds in this process."""

MAX_ADMIN_CONNECTIONS: Final = 16
MAX_HANDSHAKES: Final = 64
"""Connections still before their Hello; more are closed at once (fd exhaustion guard)."""

HANDSHAKE_TIMEOUT: Final = 5.0
ADMIN_IDLE_TIMEOUT: Final = 60.0
MAX_NAME_CHARS: Final = 64
"""A client's self-chosen name is cut to this many characters before it is kept."""
SOCKET_MODE: Final = 0o660
DIR_MODE: Final = 0o750

_UCRED: Final = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end, as the kernel says (SO_PEERCRED at connect time)."""

    pid: int
    uid: int
    gid: int


@dataclass(eq=False)
class ConnectedClient:
    """One client after its handshake: the rings it was given and the service's ends.

    The service owns these Ring objects (its own copies of the fds); the owner
    passes ``status_rings[i].fds()`` to shard i and reads ``requests``. They
    are closed by the server after ``on_client_gone`` returns.
    """

    id: int
    name: str
    peer: Peer
    request_ring: Ring
    status_rings: tuple[Ring, ...]
    requests: RingReader
    connected_at: float = field(default_factory=time.monotonic)
    _writers: dict[int, RingWriter] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.peer.pid

    @property
    def uid(self) -> int:
        return self.peer.uid

    def status_writer(self, shard: int) -> RingWriter:
        """The producer end of status ring ``shard`` in this process (one per ring)."""
        writer = self._writers.get(shard)
        if writer is None:
            writer = self._writers[shard] = self.status_rings[shard].writer()
        return writer

    def close(self) -> None:
        """Free the rings (idempotent); the client keeps its own mapping until it exits."""
        self.requests.detach()
        self.request_ring.close()
        for ring in self.status_rings:
            ring.close()


class ControlOwner(Protocol):
    """What the server reports to (the supervisor). The two client hooks must not block."""

    def on_client(self, client: ConnectedClient) -> None:
        """A client finished its handshake and holds its rings."""

    def on_client_gone(self, client: ConnectedClient) -> None:
        """The client is gone (EOF, process exit, or server stop); its rings close next."""

    async def on_admin(self, request: AdminRequest, peer: Peer) -> AdminReply:
        """Answer one admin command."""
        ...


def read_groups(pid: int) -> tuple[int, ...]:
    """Supplementary groups of ``pid`` from /proc; () if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return tuple(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return ()


def printable_name(name: str) -> str:
    """``name`` with every control, format or non-printable character escaped, cut short.

    A client chooses its name freely; it ends up in log lines, the journal and
    admin listings, where a newline could forge a line and a NUL cut one.
    """
    out: list[str] = []
    for ch in name[:MAX_NAME_CHARS]:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("..." if len(name) > MAX_NAME_CHARS else "")


def _peer_of(sock: socket.socket) -> Peer:
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return Peer(pid, uid, gid)


def _pidfd_alive(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    return not select.select([pidfd], [], [], 0)[0]


def _in_groups(peer: Peer, pidfd: int, gids: frozenset[int]) -> bool:
    """Whether the peer's primary or a supplementary group is one of ``gids``."""
    if peer.gid in gids:
        return True
    if not gids or pidfd < 0:
        return False
    groups = read_groups(peer.pid)
    # The pidfd pins the process: if it is still alive after the read, the
    # groups came from the peer and not from a new owner of its pid.
    return _pidfd_alive(pidfd) and not gids.isdisjoint(groups)


class _RefuseError(Exception):
    """End this connection with a Refused carrying the message."""


class ControlServer:
    """Accepts QSA connections on a SEQPACKET socket; runs on asyncio or uvloop."""

    def __init__(
        self,
        path: str,
        owner: ControlOwner,
        *,
        shards: int,
        request_ring_bytes: int,
        status_ring_bytes: int,
        allowed_uids: Iterable[int] = (),
        allowed_gids: Iterable[int] = (),
        admin_gids: Iterable[int] = (),
        max_clients: int = MAX_CLIENTS,
        max_clients_per_uid: int = 0,
        max_handshakes_per_uid: int = 0,
        max_admin_sessions_per_uid: int = 0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.path = path
        self.owner = owner
        self.shards = shards
        self.request_ring_bytes = request_ring_bytes
        self.status_ring_bytes = status_ring_bytes
        self.allowed_uids = frozenset(allowed_uids)
        self.allowed_gids = frozenset(allowed_gids)
        self.admin_gids = frozenset(admin_gids)
        self.max_clients = max_clients
        #: Per-uid shares of the global caps (0: none), so that one local user
        #: cannot take every slot and lock the others out.
        self.max_clients_per_uid = max_clients_per_uid
        self.max_handshakes_per_uid = max_handshakes_per_uid
        self.max_admin_sessions_per_uid = max_admin_sessions_per_uid
        self.handshake_timeout = handshake_timeout
        self.clients: dict[int, ConnectedClient] = {}
        self.refused = 0
        self.accepted = 0
        self._own_uid = os.geteuid()
        self._next_client_id = 1
        self._listener: socket.socket | None = None
        self._listener_ino: tuple[int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handshaking: Counter[int] = Counter()
        self._clients_of: Counter[int] = Counter()
        self._admins: Counter[int] = Counter()

    @classmethod
    def from_settings(
        cls, settings: ServerSettings, owner: ControlOwner, *, shards: int | None = None
    ) -> ControlServer:
        """A server configured by the ``[server]`` table."""
        return cls(
            settings.control_socket_path(),
            owner,
            shards=shards if shards is not None else settings.shard_count(),
            request_ring_bytes=settings.request_ring_bytes,
            status_ring_bytes=settings.status_ring_bytes,
            allowed_uids=settings.allowed_uids,
            allowed_gids=settings.allowed_gids,
            admin_gids=settings.admin_gids,
            max_clients_per_uid=settings.max_clients_per_uid,
            max_handshakes_per_uid=settings.max_handshakes_per_uid,
            max_admin_sessions_per_uid=settings.max_admin_sessions_per_uid,
        )

    def apply(self, settings: ServerSettings) -> None:
        """SIGHUP: the access lists and per-uid shares; connections already open stay."""
        self.allowed_uids = frozenset(settings.allowed_uids)
        self.allowed_gids = frozenset(settings.allowed_gids)
        self.admin_gids = frozenset(settings.admin_gids)
        self.max_clients_per_uid = settings.max_clients_per_uid
        self.max_handshakes_per_uid = settings.max_handshakes_per_uid
        self.max_admin_sessions_per_uid = settings.max_admin_sessions_per_uid

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind (replacing a stale socket, never a live one) and start accepting."""
        self._loop = asyncio.get_running_loop()
        parent = os.path.dirname(self.path) or "."
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
            os.chmod(parent, DIR_MODE)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self.path)
            os.chmod(self.path, SOCKET_MODE)
            st = os.stat(self.path)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        self._listener_ino = (st.st_dev, st.st_ino)
        self._loop.add_reader(sock.fileno(), self._on_acceptable)
        log.info("QSA control socket listening on %s", self.path)

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            probe.connect(self.path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
        else:
            raise RuntimeError(f"another server is already listening on {self.path}")
        finally:
            probe.close()
        os.unlink(self.path)

    async def stop(self) -> None:
        """Stop accepting, end every connection (reporting clients gone), remove the socket."""
        listener, self._listener = self._listener, None
        if listener is not None and self._loop is not None:
            self._loop.remove_reader(listener.fileno())
            listener.close()
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._listener_ino:
                    os.unlink(self.path)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ accepting

    def _on_acceptable(self) -> None:
        listener, loop = self._listener, self._loop
        if listener is None or loop is None:
            return
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: back off instead of spinning on a ready listener.
                log.error("accept on %s failed: %s; pausing for 100 ms", self.path, exc)
                loop.remove_reader(listener.fileno())
                loop.call_later(0.1, self._resume_accepting)
                return
            conn.setblocking(False)
            try:
                peer = _peer_of(conn)
            except OSError:
                conn.close()
                continue
            refusal = self._handshake_slot_refusal(peer.uid)
            if refusal:
                log.warning("QSA connection from %s refused: %s", peer, refusal)
                self._refuse_now(conn, refusal)
                continue
            task = loop.create_task(self._serve(conn, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _handshake_slot_refusal(self, uid: int) -> str:
        """Why a new connection of ``uid`` gets no handshake slot, or ""."""
        if self._handshaking.total() >= MAX_HANDSHAKES:
            return "too many connections in handshake; try again"
        share = self.max_handshakes_per_uid
        if share and self._handshaking[uid] >= share:
            return (
                f"uid {uid} has {share} connections in handshake, its share"
                " (server.max_handshakes_per_uid); try again"
            )
        return ""

    def _resume_accepting(self) -> None:
        if self._listener is not None and self._loop is not None:
            self._loop.add_reader(self._listener.fileno(), self._on_acceptable)

    def _refuse_now(self, conn: socket.socket, reason: str) -> None:
        self.refused += 1
        with contextlib.suppress(OSError):
            conn.send(encode(Refused(reason)))
        conn.close()

    # ------------------------------------------------------------ one connection

    async def _serve(self, conn: socket.socket, peer: Peer) -> None:
        pidfd = -1
        self._handshaking[peer.uid] += 1
        in_handshake = True
        try:
            if peer.pid > 0:
                try:
                    pidfd = os.pidfd_open(peer.pid)
                except ProcessLookupError:
                    return  # connected and died already
                except OSError:
                    pidfd = -1  # e.g. peer in another pid namespace: EOF alone will do
            # Decided before reading anything, told after the Hello: a peer whose
            # packet is still unread when the socket closes gets ECONNRESET
            # instead of the reason.
            refusal = self._check_peer(peer, pidfd)
            try:
                hello = await asyncio.wait_for(self._recv(conn), self.handshake_timeout)
            except TimeoutError:
                raise _RefuseError(f"no hello within {self.handshake_timeout:g} s") from None
            if hello is None:
                return
            if refusal:
                raise _RefuseError(refusal)
            if not isinstance(hello, Hello):
                raise _RefuseError(f"expected a hello, got {type(hello).__name__}")
            if hello.version != PROTOCOL_VERSION:
                raise _RefuseError(
                    f"protocol version {hello.version} is not supported "
                    f"(this server speaks {PROTOCOL_VERSION})"
                )
            self._handshaking[peer.uid] -= 1
            in_handshake = False
            if hello.role == "admin":
                await self._admin_session(conn, peer, pidfd)
            else:
                await self._client_session(conn, peer, hello, pidfd)
        except _RefuseError as exc:
            self.refused += 1
            log.warning("QSA connection from %s refused: %s", peer, exc)
            await self._send_quietly(conn, Refused(str(exc)))
        except (ProtocolError, FdPassError) as exc:
            self.refused += 1
            log.warning("QSA connection from %s: protocol error: %s", peer, exc)
            await self._send_quietly(conn, Refused(f"protocol error: {exc}"))
        except OSError as exc:
            log.info("QSA connection from %s lost: %s", peer, exc)
        except Exception:
            log.exception("QSA connection from %s: internal error", peer)
            await self._send_quietly(conn, Refused("internal error"))
        finally:
            if in_handshake:
                self._handshaking[peer.uid] -= 1
            if pidfd >= 0:
                os.close(pidfd)
            conn.close()

    def _check_peer(self, peer: Peer, pidfd: int) -> str:
        """Why ``peer`` may not connect, or "" if it may."""
        uid, gid = peer.uid, peer.gid
        if uid in (0, self._own_uid) or uid in self.allowed_uids:
            return ""
        if _in_groups(peer, pidfd, self.allowed_gids | self.admin_gids):
            return ""
        return (
            f"uid {uid} is not allowed: add it to server.allowed_uids, "
            f"or one of its groups (gid {gid}) to server.allowed_gids"
        )

    def _check_admin(self, peer: Peer, pidfd: int) -> str:
        """Why ``peer`` may not run admin commands, or "" if it may.

        Admin commands show every client's subscriptions, documents, uids and
        pids, and end or refresh any dialog: root, the service's own uid and
        members of server.admin_gids only, never every admitted client.
        """
        if peer.uid in (0, self._own_uid) or _in_groups(peer, pidfd, self.admin_gids):
            return ""
        return (
            f"uid {peer.uid} may not run admin commands: only root, the service user"
            " and members of server.admin_gids may"
        )

    async def _recv(self, conn: socket.socket) -> ControlMessage | None:
        """One control packet, or None at EOF. Fds sent to the server are a protocol error."""
        try:
            data, _ = await async_recv_fds(conn, MAX_CONTROL_PACKET, 0)
        except FdPassError as exc:
            raise ProtocolError(str(exc)) from None
        if not data:
            return None
        return decode_control(data)

    async def _send_quietly(self, conn: socket.socket, msg: Refused) -> None:
        """Send a last packet, then discard unread input so the close is not a reset."""
        with contextlib.suppress(OSError):
            conn.send(encode(msg))
        with contextlib.suppress(OSError):
            for _ in range(16):
                if not conn.recv(MAX_CONTROL_PACKET, socket.MSG_DONTWAIT | socket.MSG_TRUNC):
                    break

    # ------------------------------------------------------------ clients

    def _make_rings(self) -> tuple[Ring, list[Ring]]:
        request = Ring.create(self.request_ring_bytes)
        statuses: list[Ring] = []
        try:
            for _ in range(self.shards):
                statuses.append(Ring.create(self.status_ring_bytes))
        except BaseException:
            request.close()
            for ring in statuses:
                ring.close()
            raise
        return request, statuses

    async def _client_session(
        self, conn: socket.socket, peer: Peer, hello: Hello, pidfd: int
    ) -> None:
        if len(self.clients) >= self.max_clients:
            raise _RefuseError(f"too many clients ({self.max_clients})")
        share = self.max_clients_per_uid
        if share and self._clients_of[peer.uid] >= share:
            raise _RefuseError(
                f"uid {peer.uid} has {share} clients connected, its share"
                " (server.max_clients_per_uid)"
            )
        try:
            request, statuses = self._make_rings()
        except Exception as exc:
            log.error("cannot create rings for %s: %s", peer, exc)
            raise _RefuseError(f"cannot create rings: {exc}") from None
        client_id = self._next_client_id
        self._next_client_id += 1
        client = ConnectedClient(
            id=client_id,
            name=printable_name(hello.name),
            peer=peer,
            request_ring=request,
            status_rings=tuple(statuses),
            requests=request.reader(),
        )
        announced = False
        self._clients_of[peer.uid] += 1
        try:
            await self._send_welcome(conn, client)
            self.clients[client_id] = client
            self.accepted += 1
            log.info("QSA client %d '%s' connected: %s", client_id, client.name, peer)
            announced = True
            self.owner.on_client(client)
            await self._wait_gone(conn, pidfd)
        finally:
            self._clients_of[peer.uid] -= 1
            self.clients.pop(client_id, None)
            if announced:
                log.info("QSA client %d '%s' gone", client_id, client.name)
                try:
                    self.owner.on_client_gone(client)
                except Exception:
                    log.exception("on_client_gone failed for client %d", client_id)
            client.close()

    async def _send_welcome(self, conn: socket.socket, client: ConnectedClient) -> None:
        fds = list(client.request_ring.fds())
        for ring in client.status_rings:
            fds.extend(ring.fds())
        welcome = Welcome(
            version=PROTOCOL_VERSION,
            client_id=client.id,
            shards=len(client.status_rings),
            request_ring_bytes=client.request_ring.capacity,
            status_ring_bytes=client.status_rings[0].capacity,
            fds=len(fds),
        )
        await async_send_fds(conn, encode(welcome), fds[:MAX_FDS_PER_PACKET])
        for offset in range(MAX_FDS_PER_PACKET, len(fds), MAX_FDS_PER_PACKET):
            chunk = fds[offset : offset + MAX_FDS_PER_PACKET]
            await async_send_fds(conn, encode(MoreFds(offset=offset)), chunk)

    async def _wait_gone(self, conn: socket.socket, pidfd: int) -> None:
        """Return when the client closes its socket, sends anything, or its process exits."""
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[str] = loop.create_future()

        def finish(why: str) -> None:
            if not gone.done():
                gone.set_result(why)

        def on_conn() -> None:
            try:
                data, _ = recv_fds(conn, MAX_CONTROL_PACKET, 0)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                finish(f"socket error: {exc}")
                return
            if not data:
                finish("EOF")
            else:
                finish("unexpected packet after the welcome")

        fd = conn.fileno()
        loop.add_reader(fd, on_conn)
        if pidfd >= 0:
            loop.add_reader(pidfd, finish, "process exited")
        try:
            why = await gone
            log.debug("client connection ended: %s", why)
            if why.startswith("unexpected"):
                await self._send_quietly(conn, Refused(why))
        finally:
            loop.remove_reader(fd)
            if pidfd >= 0:
                loop.remove_reader(pidfd)

    # ------------------------------------------------------------ admin

    def _admin_refusal(self, peer: Peer, pidfd: int) -> str:
        """Why ``peer`` gets no admin session now, or ""."""
        refusal = self._check_admin(peer, pidfd)
        if refusal:
            return refusal
        if self._admins.total() >= MAX_ADMIN_CONNECTIONS:
            return f"too many admin connections ({MAX_ADMIN_CONNECTIONS})"
        share = self.max_admin_sessions_per_uid
        if share and self._admins[peer.uid] >= share:
            return (
                f"uid {peer.uid} has {share} admin connections, its share"
                " (server.max_admin_sessions_per_uid)"
            )
        return ""

    async def _admin_session(self, conn: socket.socket, peer: Peer, pidfd: int) -> None:
        refusal = self._admin_refusal(peer, pidfd)
        if refusal:
            # Told after the first request, which an admin client sends right
            # behind its hello: closing with that packet unread would reach it
            # as ECONNRESET instead of the reason.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recv(conn), self.handshake_timeout)
            raise _RefuseError(refusal)
        self._admins[peer.uid] += 1
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(self._recv(conn), ADMIN_IDLE_TIMEOUT)
                except TimeoutError:
                    return
                if msg is None:
                    return
                if not isinstance(msg, AdminRequest):
                    raise _RefuseError(f"expected an admin request, got {type(msg).__name__}")
                try:
                    reply = await self.owner.on_admin(msg, peer)
                except Exception as exc:
                    log.exception("admin command %r failed", msg.command)
                    reply = AdminReply(ok=False, error=f"internal error: {exc}")
                for packet in split_admin_reply(reply):
                    await async_send_fds(conn, packet, [])
        finally:
            self._admins[peer.uid] -= 1
