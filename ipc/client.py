"""The QSA client library: subscribe to presence, get status messages back.

asyncio first (``QsaClient``); ``BlockingQsaClient`` runs one on a private loop
in a thread for scripts and threaded programs.

The client hides service restarts: when the control socket reaches EOF it
reconnects with jittered exponential backoff and replays its live
subscriptions under the same ids, so callers see at most a gap in statuses
(and a fresh status per subscription once the new dialogs are up).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import random
import socket
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from ..presence.status import Failure, Status, StatusMessage, SubscriptionState
from .fdpass import FdPassError, async_recv_fds, async_send_fds, close_fds, recv_fds
from .messages import (
    FDS_PER_RING,
    MAX_CONTROL_PACKET,
    MAX_FDS_PER_PACKET,
    MAX_ID,
    MAX_SHARDS,
    PROTOCOL_VERSION,
    AdminReply,
    AdminRequest,
    ControlMessage,
    Hello,
    MoreFds,
    ProtocolError,
    Refused,
    Role,
    Subscribe,
    Unsubscribe,
    Welcome,
    decode_control,
    decode_status,
    encode,
)
from .ring import Ring, RingBroken, RingError, RingFull, RingReader, RingWriter

__all__ = [
    "BlockingQsaClient",
    "ClientEvent",
    "ClosedError",
    "ConnectError",
    "QsaClient",
    "QsaError",
    "QsaTimeoutError",
    "RefusedError",
    "admin",
]

log = logging.getLogger(__name__)

BACKOFF_FIRST: Final = 0.1
BACKOFF_MAX: Final = 5.0
CONNECT_TIMEOUT: Final = 5.0
MAX_PENDING_EVENTS: Final = 4096
"""Decoded events waiting for the caller before the client stops draining its
status rings; the rings then fill and the shards merge (status is state)."""

_T = TypeVar("_T")


class QsaError(Exception):
    """Base of the client library's errors."""


class ConnectError(QsaError):
    """The service could not be reached or the handshake failed."""


class RefusedError(ConnectError):
    """The service refused the connection; ``reason`` is its own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused by the service: {reason}")
        self.reason = reason


class QsaTimeoutError(QsaError, TimeoutError):
    """A request could not be written in time: the request ring stayed full."""


class ClosedError(QsaError):
    """The client was closed."""


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A status message with the names the caller subscribed with."""

    id: int
    record: str
    subscriber: str
    message: StatusMessage

    @property
    def kind(self) -> Literal["status", "error"]:
        return "status" if isinstance(self.message, Status) else "error"


@dataclass(frozen=True, slots=True)
class _Sub:
    id: int
    package: str
    record: str
    subscriber: str


class _LostError(Exception):
    """The connection died while a request was waiting for ring space."""


@dataclass(eq=False)
class _Connection:
    """Everything that belongs to one connection; thrown away whole on EOF."""

    sock: socket.socket
    welcome: Welcome
    request_ring: Ring
    writer: RingWriter
    status_rings: list[Ring]
    readers: list[RingReader]
    lost: asyncio.Future[None]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sent: set[int] = field(default_factory=set)
    attached: bool = False

    def close(self) -> None:
        for reader in self.readers:
            reader.detach()
        self.request_ring.close()
        for ring in self.status_rings:
            ring.close()
        self.sock.close()


async def _open_control(path: str, role: Role, name: str, timeout: float) -> socket.socket:
    """Connect and send the Hello; the caller reads the answer."""
    sock = socket.socket(
        socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
    )
    try:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, path), timeout)
        hello = Hello(version=PROTOCOL_VERSION, role=role, name=name)
        await async_send_fds(sock, encode(hello), [])
    except TimeoutError:
        sock.close()
        raise ConnectError(f"cannot connect to {path}: timed out") from None
    except OSError as exc:
        sock.close()
        raise ConnectError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


async def _recv_control(
    sock: socket.socket, maxfds: int, timeout: float
) -> tuple[ControlMessage, list[int]]:
    """One packet from the service; EOF and Refused become exceptions."""
    try:
        data, fds = await asyncio.wait_for(
            async_recv_fds(sock, MAX_CONTROL_PACKET, maxfds), timeout
        )
    except TimeoutError:
        raise ConnectError("no answer from the service") from None
    except FdPassError as exc:
        raise ConnectError(str(exc)) from None
    except OSError as exc:
        raise ConnectError(f"control socket: {exc.strerror or exc}") from None
    if not data:
        close_fds(fds)
        raise ConnectError("the service closed the connection")
    try:
        msg = decode_control(data)
    except ProtocolError as exc:
        close_fds(fds)
        raise ConnectError(str(exc)) from None
    if isinstance(msg, Refused):
        close_fds(fds)
        raise RefusedError(msg.reason)
    return msg, fds


async def _handshake(path: str, name: str, timeout: float) -> _Connection:
    """Connect as a client and attach every ring of the Welcome; all or nothing."""
    loop = asyncio.get_running_loop()
    sock = await _open_control(path, "client", name, timeout)
    fds: list[int] = []
    rings: list[Ring] = []
    try:
        msg, fds = await _recv_control(sock, MAX_FDS_PER_PACKET, timeout)
        if not isinstance(msg, Welcome):
            raise ConnectError(f"expected a welcome, got {type(msg).__name__}")
        if msg.version != PROTOCOL_VERSION:
            raise ConnectError(f"service speaks protocol {msg.version}, not {PROTOCOL_VERSION}")
        expected = FDS_PER_RING * (1 + msg.shards)
        if not 1 <= msg.shards <= MAX_SHARDS or msg.fds != expected:
            raise ConnectError(f"welcome announces {msg.fds} fds for {msg.shards} shards")
        while len(fds) < expected:
            more, extra = await _recv_control(sock, MAX_FDS_PER_PACKET, timeout)
            fds.extend(extra)
            if not isinstance(more, MoreFds) or more.offset != len(fds) - len(extra):
                raise ConnectError("bad fd continuation in the welcome")
        if len(fds) != expected:
            raise ConnectError(f"welcome carried {len(fds)} fds, expected {expected}")
        for i in range(0, expected, FDS_PER_RING):
            memfd, data_efd, space_efd = fds[i : i + FDS_PER_RING]
            try:
                rings.append(Ring.attach(memfd, data_efd, space_efd))
            except RingError as exc:
                raise ConnectError(f"ring {i // FDS_PER_RING} of the welcome: {exc}") from None
            fds[i : i + FDS_PER_RING] = [-1, -1, -1]  # owned by the ring now
        request_ring, status_rings = rings[0], rings[1:]
        return _Connection(
            sock=sock,
            welcome=msg,
            request_ring=request_ring,
            writer=request_ring.writer(),
            status_rings=status_rings,
            readers=[ring.reader() for ring in status_rings],
            lost=loop.create_future(),
        )
    except BaseException:
        for ring in rings:
            ring.close()
        close_fds(fd for fd in fds if fd >= 0)
        sock.close()
        raise


class QsaClient:
    """Presence subscriptions over QSA, on the running asyncio (or uvloop) loop.

    Counters: ``reconnects`` (successful reconnects after a lost connection),
    ``bad_records`` (status records that did not decode or were malformed in
    the ring), ``unknown_ids`` (statuses for ids this client does not know).
    """

    def __init__(
        self,
        path: str,
        *,
        name: str = "",
        reconnect: bool = True,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_pending_events: int = MAX_PENDING_EVENTS,
    ) -> None:
        self.path = path
        self.name = name
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self.max_pending_events = max_pending_events
        self.reconnects = 0
        self.unknown_ids = 0
        self._decode_errors = 0
        self._old_bad_records = 0
        self._conn: _Connection | None = None
        self._live: dict[int, _Sub] = {}
        self._names: dict[int, _Sub] = {}
        self._next_id = 1
        self._events: collections.deque[ClientEvent] = collections.deque()
        self._wakeup = asyncio.Event()
        self._paused = False
        self._closed = False
        self._started = False
        self._supervisor: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.lost.done()

    @property
    def client_id(self) -> int | None:
        """The service's number for the current connection (changes on reconnect)."""
        return self._conn.welcome.client_id if self._conn is not None else None

    @property
    def bad_records(self) -> int:
        conn = self._conn
        ring_bad = sum(r.bad_records for r in conn.readers) if conn is not None else 0
        return self._decode_errors + self._old_bad_records + ring_bad

    @property
    def subscriptions(self) -> dict[int, tuple[str, str]]:
        """Live subscriptions: id -> (record, subscriber)."""
        return {i: (s.record, s.subscriber) for i, s in self._live.items()}

    # ------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """First connection; raises ConnectError (RefusedError) instead of retrying."""
        if self._closed:
            raise ClosedError("client is closed")
        if self._started:
            return
        conn = await _handshake(self.path, self.name, self.connect_timeout)
        self._started = True
        self._install(conn)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        """Close the connection; the service then ends this client's subscriptions."""
        if self._closed:
            return
        self._closed = True
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            self._teardown(conn)
        self._wakeup.set()

    async def __aenter__(self) -> QsaClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _install(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        self._conn = conn
        loop.add_reader(conn.sock.fileno(), self._on_control, conn)
        if not self._paused:
            self._attach_readers(conn)

    def _attach_readers(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        for shard, reader in enumerate(conn.readers):
            reader.attach_reader(
                loop,
                functools.partial(self._on_batch, shard=shard),
                on_broken=functools.partial(self._on_broken, conn, shard),
            )
        conn.attached = True

    def _detach_readers(self, conn: _Connection) -> None:
        for reader in conn.readers:
            reader.detach()
        conn.attached = False

    def _on_control(self, conn: _Connection) -> None:
        """The control socket is only ever read for EOF (or a Refused before it)."""
        try:
            data, _ = recv_fds(conn.sock, MAX_CONTROL_PACKET, 0)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            log.info("QSA control socket error: %s", exc)
        if data:
            try:
                msg = decode_control(data)
            except ProtocolError:
                return
            if isinstance(msg, Refused):
                log.warning("QSA service ended the connection: %s", msg.reason)
            return
        self._mark_lost(conn)

    def _mark_lost(self, conn: _Connection) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
        if not conn.lost.done():
            conn.lost.set_result(None)

    def _on_broken(self, conn: _Connection, shard: int, exc: RingBroken) -> None:
        log.error("QSA status ring of shard %d is broken (%s); reconnecting", shard, exc)
        self._mark_lost(conn)

    def _teardown(self, conn: _Connection) -> None:
        """Deliver what is still in the status rings, then free everything."""
        self._detach_readers(conn)
        for shard, reader in enumerate(conn.readers):
            with contextlib.suppress(RingError):
                while batch := reader.read_batch():
                    self._on_batch(batch, shard)
            self._old_bad_records += reader.bad_records
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
        conn.close()

    async def _supervise(self) -> None:
        """Wait for the connection to die, then reconnect and replay, forever."""
        while not self._closed:
            conn = self._conn
            if conn is None:
                return
            await asyncio.shield(conn.lost)
            self._conn = None
            self._teardown(conn)
            # The service forgot every subscription of that connection: the ones
            # being unsubscribed are over, the live ones are replayed below.
            for sub_id in list(self._names):
                if sub_id not in self._live:
                    del self._names[sub_id]
            if not self.reconnect:
                log.warning("QSA connection lost; not reconnecting")
                self._closed = True
                self._wakeup.set()
                return
            log.warning("QSA connection to %s lost; reconnecting", self.path)
            new = await self._reconnect()
            self.reconnects += 1
            self._install(new)
            try:
                await self._replay(new)
            except _LostError:
                continue
            except QsaError as exc:
                log.error("replaying subscriptions failed: %s", exc)

    async def _reconnect(self) -> _Connection:
        delay = BACKOFF_FIRST
        while True:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                return await _handshake(self.path, self.name, self.connect_timeout)
            except ConnectError as exc:
                log.info("QSA reconnect to %s failed: %s", self.path, exc)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _replay(self, conn: _Connection) -> None:
        for sub in list(self._live.values()):
            await self._send_subscribe(conn, sub, None)
        if self._live:
            log.info("replayed %d subscriptions", len(self._live))

    # ------------------------------------------------------------ requests

    async def _write(self, conn: _Connection, payload: bytes, timeout: float | None) -> None:
        """Write one request in order; waits for room (backpressure) unless the link dies."""
        if conn.lost.done():
            raise _LostError
        try:
            if conn.writer.try_write(payload):
                return
        except RingBroken:
            self._mark_lost(conn)
            raise _LostError from None
        write = asyncio.ensure_future(conn.writer.write(payload, timeout))
        await asyncio.wait({write, conn.lost}, return_when=asyncio.FIRST_COMPLETED)
        if not write.done():
            write.cancel()
            with contextlib.suppress(asyncio.CancelledError, RingError):
                await write
            raise _LostError
        try:
            write.result()
        except RingFull:
            raise QsaTimeoutError(
                f"request ring stayed full for {timeout} s: the service is not reading"
            ) from None
        except RingBroken:
            self._mark_lost(conn)
            raise _LostError from None

    async def _send_subscribe(self, conn: _Connection, sub: _Sub, timeout: float | None) -> None:
        async with conn.lock:
            if sub.id in conn.sent or self._live.get(sub.id) is not sub:
                return
            payload = encode(Subscribe(sub.id, sub.package, sub.record, sub.subscriber))
            await self._write(conn, payload, timeout)
            conn.sent.add(sub.id)

    async def subscribe(
        self,
        record: str,
        subscriber: str,
        package: str = "presence",
        *,
        timeout: float | None = None,
    ) -> int:
        """Subscribe ``record`` as ``subscriber``; returns the id its events carry.

        Waits while the request ring is full (up to ``timeout``, then QsaTimeoutError).
        While disconnected the subscription is kept and sent on reconnect.
        """
        if self._closed:
            raise ClosedError("client is closed")
        if not self._started:
            raise ConnectError("call connect() first")
        if self._next_id > MAX_ID:
            raise QsaError("subscription ids exhausted")
        sub = _Sub(self._next_id, package, record, subscriber)
        self._next_id += 1
        self._live[sub.id] = sub
        self._names[sub.id] = sub
        conn = self._conn
        if conn is None:
            return sub.id
        try:
            await self._send_subscribe(conn, sub, timeout)
        except _LostError:
            pass  # replayed on reconnect
        except BaseException:
            if sub.id not in conn.sent:
                self._live.pop(sub.id, None)
                self._names.pop(sub.id, None)
            raise
        return sub.id

    async def unsubscribe(self, sub_id: int, *, timeout: float | None = None) -> None:
        """End a subscription; its final status (terminated) still arrives as an event."""
        if self._closed:
            raise ClosedError("client is closed")
        sub = self._live.pop(sub_id, None)
        if sub is None:
            return
        conn = self._conn
        if conn is None or conn.lost.done():
            self._names.pop(sub_id, None)
            return
        try:
            async with conn.lock:
                if sub_id not in conn.sent:
                    self._names.pop(sub_id, None)
                    return
                await self._write(conn, encode(Unsubscribe(sub_id)), timeout)
        except _LostError:
            self._names.pop(sub_id, None)
        except BaseException:
            self._live[sub_id] = sub
            raise

    # ------------------------------------------------------------ events

    def _on_batch(self, batch: list[bytes], shard: int) -> None:
        names = self._names
        events = self._events
        for raw in batch:
            try:
                msg = decode_status(raw)
            except ProtocolError as exc:
                self._decode_errors += 1
                log.warning("undecodable status record from shard %d: %s", shard, exc)
                continue
            sub = names.get(msg.id)
            if sub is None:
                self.unknown_ids += 1
                continue
            if isinstance(msg, Failure):
                final = msg.retry_in is None
            else:
                final = msg.state == SubscriptionState.TERMINATED and msg.id not in self._live
            if final:
                del names[msg.id]
                self._live.pop(msg.id, None)
                if self._conn is not None:
                    self._conn.sent.discard(msg.id)
            events.append(ClientEvent(msg.id, sub.record, sub.subscriber, msg))
        self._wakeup.set()
        conn = self._conn
        if len(events) >= self.max_pending_events and not self._paused:
            self._paused = True
            if conn is not None and conn.attached:
                self._detach_readers(conn)

    def _maybe_resume(self) -> None:
        if self._paused and len(self._events) <= self.max_pending_events // 2:
            self._paused = False
            conn = self._conn
            if conn is not None and not conn.attached and not conn.lost.done():
                self._attach_readers(conn)

    def poll(self) -> ClientEvent | None:
        """The next event if one is ready, without waiting."""
        if not self._events:
            return None
        event = self._events.popleft()
        self._maybe_resume()
        return event

    async def next_event(self, timeout: float | None = None) -> ClientEvent | None:
        """The next event; None after ``timeout`` seconds or once the client is closed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._events:
            if self._closed:
                return None
            self._wakeup.clear()
            if deadline is None:
                await self._wakeup.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return None
        return self.poll()

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every event, in arrival order, until the client is closed."""
        while True:
            event = await self.next_event()
            if event is None:
                return
            yield event


class BlockingQsaClient:
    """QsaClient for blocking code: the asyncio client runs on a private loop thread.

    Every method waits at most its ``timeout``; a request that cannot be
    written because the request ring stays full raises QsaTimeoutError.
    """

    def __init__(
        self,
        path: str,
        *,
        name: str = "",
        connect_timeout: float = CONNECT_TIMEOUT,
        request_timeout: float = 10.0,
    ) -> None:
        self.request_timeout = request_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="qsa-client", daemon=True
        )
        self._thread.start()
        self._client = QsaClient(path, name=name, connect_timeout=connect_timeout)
        try:
            self._call(self._client.connect(), connect_timeout + 1.0)
        except BaseException:
            self._shutdown_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise QsaTimeoutError(f"no answer within {timeout} s") from None

    @property
    def connected(self) -> bool:
        return self._client.connected

    @property
    def reconnects(self) -> int:
        return self._client.reconnects

    @property
    def client(self) -> QsaClient:
        """The asyncio client underneath (its loop is not the caller's)."""
        return self._client

    def subscribe(
        self,
        record: str,
        subscriber: str,
        package: str = "presence",
        *,
        timeout: float | None = None,
    ) -> int:
        t = self.request_timeout if timeout is None else timeout
        return self._call(self._client.subscribe(record, subscriber, package, timeout=t), t + 1.0)

    def unsubscribe(self, sub_id: int, *, timeout: float | None = None) -> None:
        t = self.request_timeout if timeout is None else timeout
        self._call(self._client.unsubscribe(sub_id, timeout=t), t + 1.0)

    def get(self, timeout: float | None = None) -> ClientEvent | None:
        """The next event, or None after ``timeout`` seconds (or once closed)."""
        return self._call(self._client.next_event(timeout), None)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(QsaError, RuntimeError):
            self._call(self._client.close(), 5.0)
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> BlockingQsaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def admin(path: str, command: str, *, timeout: float = 10.0, **args: str) -> AdminReply:
    """Run one admin command (stats, list, show, kill, refresh) and return the reply.

    A reply split over several packets is joined back: their ``data`` lists
    are concatenated.
    """
    sock = await _open_control(path, "admin", "ctl", timeout)
    try:
        request = AdminRequest(command=command, args={k: str(v) for k, v in args.items()})
        try:
            await async_send_fds(sock, encode(request), [])
        except OSError as exc:
            raise ConnectError(f"control socket: {exc.strerror or exc}") from None
        parts: list[AdminReply] = []
        while True:
            msg, _ = await _recv_control(sock, 0, timeout)
            if not isinstance(msg, AdminReply):
                raise ConnectError(f"expected an admin reply, got {type(msg).__name__}")
            parts.append(msg)
            if not msg.more:
                break
    finally:
        sock.close()
    if len(parts) == 1:
        return parts[0]
    data: list[Any] = []
    for part in parts:
        data.extend(part.data if isinstance(part.data, list) else [part.data])
    last = parts[-1]
    return AdminReply(ok=last.ok, data=data, error=last.error)
