"""A hostile QSA service for the C client: real sockets, real rings, crafted lies.

It speaks the protocol with the project's own pieces (``Ring.create``,
``send_fds``) and then breaks it on purpose where a test says: too many fds,
rings that fail the attach checks, malformed records, counters that make no
sense. The status rings are written raw through a mapping of their memfd, as
a broken or malicious shard could.
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from presence_b2b.ipc.fdpass import send_fds
from presence_b2b.ipc.messages import (
    PROTOCOL_VERSION,
    Hello,
    Request,
    Welcome,
    decode_control,
    decode_request,
    encode,
)
from presence_b2b.ipc.ring import (
    DATA_OFFSET,
    HEADER_SIZE,
    KIND_DATA,
    Ring,
    RingReader,
    RingWriter,
)

OFF_HEAD = 128
OFF_PRODUCER_WAITING = 136
OFF_TAIL = 256


class RawProducer:
    """The producer side of a status ring, written byte by byte (nothing checked)."""

    def __init__(self, ring: Ring) -> None:
        memfd, self.data_efd, _ = ring.fds()
        self.cap = ring.capacity
        self.mm = mmap.mmap(memfd, HEADER_SIZE + self.cap)
        self.head = struct.unpack_from("<Q", self.mm, OFF_HEAD)[0]

    def put(self, payload: bytes, *, kind: int = KIND_DATA, length: int | None = None) -> None:
        """Append one record with any header, publish head and ring the doorbell."""
        n = len(payload) if length is None else length
        pos = self.head & (self.cap - 1)
        struct.pack_into("<II", self.mm, DATA_OFFSET + pos, n, kind)
        self.mm[DATA_OFFSET + pos + 8 : DATA_OFFSET + pos + 8 + len(payload)] = payload
        self.publish(self.head + ((len(payload) + 15) & ~7))

    def publish(self, head: int) -> None:
        self.head = head
        struct.pack_into("<Q", self.mm, OFF_HEAD, head)
        os.eventfd_write(self.data_efd, 1)

    def tail(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, OFF_TAIL)[0])

    def wait_consumed(self, timeout: float = 10.0) -> None:
        """Wait until the consumer's tail reaches head (it has read everything)."""
        deadline = time.monotonic() + timeout
        while self.tail() != self.head:
            assert time.monotonic() < deadline, f"tail {self.tail()} never reached head {self.head}"
            time.sleep(0.005)

    def close(self) -> None:
        self.mm.close()


class Connection:
    """One accepted client: its socket and, once welcomed, its rings."""

    def __init__(self, sock: socket.socket, hello: Hello, packet: bytes) -> None:
        self.sock = sock
        self.hello = hello
        self.hello_packet = packet
        self.rings: list[Ring] = []
        self.requests: RingReader | None = None

    def welcome(self, shards: int = 1, *, full: bool = False) -> list[RawProducer]:
        """A correct welcome with fresh rings; the status rings' raw producers.

        ``full``: the request ring is handed over full (as if the service had
        stopped reading); ``free_request_ring`` empties it.
        """
        self.rings = [Ring.create(1 << 16)] + [Ring.create(1 << 16) for _ in range(shards)]
        fds = [fd for ring in self.rings for fd in ring.fds()]
        if full:
            with self._request_header() as mm:
                struct.pack_into("<Q", mm, OFF_HEAD, self.rings[0].capacity)
        else:
            self.requests = self.rings[0].reader()
        self.send_welcome(fds, shards=shards)
        return [RawProducer(ring) for ring in self.rings[1:]]

    def status_writers(self) -> list[RingWriter]:
        """Well-behaved producers of the status rings (instead of the raw ones)."""
        return [ring.writer() for ring in self.rings[1:]]

    def _request_header(self) -> mmap.mmap:
        return mmap.mmap(self.rings[0].fds()[0], HEADER_SIZE)

    def producer_waiting(self) -> int:
        """The request ring's ``producer_waiting`` flag, as the client set it."""
        with self._request_header() as mm:
            return int(struct.unpack_from("<Q", mm, OFF_PRODUCER_WAITING)[0])

    def free_request_ring(self) -> None:
        """Consume everything in the request ring unread, ring the space doorbell."""
        with self._request_header() as mm:
            struct.pack_into("<Q", mm, OFF_TAIL, struct.unpack_from("<Q", mm, OFF_HEAD)[0])
        self.requests = self.rings[0].reader()
        os.eventfd_write(self.rings[0].fds()[2], 1)

    def send_welcome(
        self, fds: Sequence[int], *, shards: int = 1, announced: int | None = None
    ) -> None:
        welcome = Welcome(
            version=PROTOCOL_VERSION,
            client_id=1,
            shards=shards,
            request_ring_bytes=1 << 16,
            status_ring_bytes=1 << 16,
            fds=len(fds) if announced is None else announced,
        )
        send_fds(self.sock, encode(welcome), list(fds))

    def next_record(self, timeout: float = 10.0) -> bytes:
        """The next record of the request ring, as the client wrote it."""
        assert self.requests is not None, "not welcomed"
        batch = self.requests.read_blocking(timeout, max_records=1)
        assert batch, f"no request within {timeout:g} s"
        return batch[0]

    def next_request(self, timeout: float = 10.0) -> Request:
        return decode_request(self.next_record(timeout))

    def close(self) -> None:
        if self.requests is not None:
            self.requests.detach()
        for ring in self.rings:
            ring.close()
        self.sock.close()


class HostileService:
    """A listening control socket; ``accept`` returns each client after its hello."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.connections: list[Connection] = []

    def accept(self, timeout: float = 10.0) -> Connection:
        ready, _, _ = select.select([self.listener], [], [], timeout)
        assert ready, f"no client connected within {timeout:g} s"
        sock, _ = self.listener.accept()
        sock.settimeout(timeout)
        packet = sock.recv(65536)
        hello = decode_control(packet)
        assert isinstance(hello, Hello), hello
        conn = Connection(sock, hello, packet)
        self.connections.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.listener.close()
