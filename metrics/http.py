"""The scrape endpoint: a small HTTP/1.1 server on the supervisor's event loop.

Why not ``prometheus_client.start_http_server``: it runs a thread per
connection with no read timeout and no limit on the request, so a scraper that
opens connections and never finishes its request pins a thread each, without
bound. This handler caps open connections, in all and per peer address, the
size of the request head and the time allowed to send it and to take the
answer, and closes every connection after one response.

Idle connections must not lock scrapers out: a connection that has not sent
its whole request head yet holds nothing a scrape needs, and when a cap is
reached the oldest such connection (of the same peer for the per-peer cap) is
closed to make room. Only connections being answered are never closed early;
when every slot is one of those, the newcomer gets a 503.

The scrape itself (copying the blocks, a few /proc reads per process, and
mostly prometheus_client's text formatting: ~8 ms for 2 shards, ~15 ms for 8
here) runs on one dedicated worker thread, so the loop keeps routing QSA
requests between GIL slices. One worker also serialises scrapes, so the
collector is never run twice at once. Shards are forked from this process
while that thread may exist; they never touch the registry, the only lock it
can hold.

Served: ``GET|HEAD /metrics`` (text format 0.0.4, or OpenMetrics when the
Accept header asks for it; gzip when accepted) and ``GET|HEAD /healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

__all__ = ["MetricsServer", "parse_listen"]

log = logging.getLogger(__name__)

#: Health callback: (healthy, one-line detail).
HealthFn = Callable[[], tuple[bool, str]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` from the ``[metrics] listen`` key."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"metrics.listen: must be 'host:port', got {listen!r}")
    return host.strip("[]"), int(port)


class MetricsServer:
    """``await start()`` on the supervisor's loop, ``await stop()`` on the way out."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 9478,
        *,
        health: HealthFn | None = None,
        max_connections: int = 64,
        max_per_peer: int = 8,
        max_request_bytes: int = 8192,
        request_timeout: float = 5.0,
        response_timeout: float = 10.0,
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._health = health or (lambda: (True, "ok"))
        self._max_connections = max_connections
        self._max_per_peer = max_per_peer
        #: Open connections per peer address, and the peer of each connection.
        self._per_peer: Counter[str] = Counter()
        self._open: dict[asyncio.Task[Any], str] = {}
        #: Connections still waiting for their request head, oldest first: the
        #: ones closed to make room.
        self._idle: dict[asyncio.Task[Any], str] = {}
        self._max_request = max_request_bytes
        self._request_timeout = request_timeout
        self._response_timeout = response_timeout
        self._server: asyncio.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-scrape")
        self._server = await asyncio.start_server(
            self._accept,
            self._host,
            self._port,
            limit=self._max_request,
            reuse_address=True,
            backlog=16,
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _make_room(self, peer: str) -> bool:
        """Close idle connections until ``peer`` may open one more; False if none would do."""
        if self._per_peer[peer] >= self._max_per_peer and not self._evict(lambda p: p == peer):
            return False
        if len(self._open) >= self._max_connections:
            return self._evict(lambda p: True)
        return True

    def _evict(self, whose: Callable[[str], bool]) -> bool:
        """Close the oldest connection still waiting for its request, of a matching peer."""
        for task, peer in self._idle.items():
            if whose(peer):
                self._forget(task)
                task.cancel()
                log.debug("metrics endpoint: closed an idle connection of %s for room", peer)
                return True
        return False

    def _forget(self, task: asyncio.Task[Any]) -> None:
        """Uncount a connection (once: at eviction or at its end, whichever is first)."""
        self._idle.pop(task, None)
        peer = self._open.pop(task, None)
        if peer is not None:
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        address = writer.get_extra_info("peername")
        peer = str(address[0]) if isinstance(address, tuple) else str(address)
        try:
            if not self._make_room(peer):
                # Every slot is busy answering: refuse at once rather than queue.
                await self._send(writer, 503, b"too many scrapes\n", "text/plain", head=False)
                return
            self._per_peer[peer] += 1
            self._open[task] = self._idle[task] = peer
            await self._serve(reader, writer, task)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("metrics endpoint")
        finally:
            self._forget(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[Any]
    ) -> None:
        try:
            head = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), self._request_timeout
            )
            self._idle.pop(task, None)  # being answered now: no longer one to close for room
        except TimeoutError:
            await self._send(writer, 408, b"request timeout\n", "text/plain", head=False)
            return
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, b"request too large\n", "text/plain", head=False)
            return
        except asyncio.IncompleteReadError:
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._send(writer, 400, b"bad request\n", "text/plain", head=False)
            return
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            await self._send(writer, 405, b"GET or HEAD\n", "text/plain", head=False,
                             extra=(("Allow", "GET, HEAD"),))
            return
        path = target.split("?", 1)[0]
        head_only = method == "HEAD"
        if path == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._executor, encoder, self._registry)
            extra: tuple[tuple[str, str], ...] = ()
            if "gzip" in headers.get("accept-encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                extra = (("Content-Encoding", "gzip"),)
            await self._send(writer, 200, body, content_type, head=head_only, extra=extra)
        elif path == "/healthz":
            ok, detail = self._health()
            await self._send(writer, 200 if ok else 503, detail.encode() + b"\n",
                             "text/plain; charset=utf-8", head=head_only)
        else:
            await self._send(writer, 404, b"try /metrics\n", "text/plain", head=head_only)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str,
        *,
        head: bool,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_REASONS[status]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in extra),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head:
            writer.write(body)
        await asyncio.wait_for(writer.drain(), self._response_timeout)
