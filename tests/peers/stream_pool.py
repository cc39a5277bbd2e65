"""The shard's TCP/TLS connection pool on a private uvloop loop, for tests.

`PoolHarness` records every message the pool hands over and every send it
reports failed, and runs the loop only while a test waits for something, so a
test reads as: send, then `wait_for(...)` what must follow.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.shard.connections import ConnectionPool, Received, SendFailure, StreamSettings

T = TypeVar("T")


class PoolHarness:
    """A ConnectionPool with its callbacks recorded in `received` and `failures`."""

    def __init__(
        self,
        *,
        settings: StreamSettings | None = None,
        tls_client: ssl.SSLContext | None = None,
        tls_server: ssl.SSLContext | None = None,
        metrics: ShardMetrics | None = None,
    ) -> None:
        self.loop = uvloop.new_event_loop()
        self.received: list[Received] = []
        self.failures: list[SendFailure] = []
        #: Called with each message after it is recorded (e.g. to answer a NOTIFY).
        self.on_message: Callable[[Received], None] | None = None
        self.pool = ConnectionPool(
            self.loop,
            self._received,
            self.failures.append,
            settings=settings,
            tls_client=tls_client,
            tls_server=tls_server,
            metrics=metrics,
        )

    def _received(self, received: Received) -> None:
        self.received.append(received)
        if self.on_message is not None:
            self.on_message(received)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on the pool's loop to completion."""
        return self.loop.run_until_complete(coro)

    def wait_for(self, done: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Run the loop until `done()` holds; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.loop.run_until_complete(asyncio.sleep(0.01))
        return True

    def messages(self, start: bytes) -> list[Received]:
        """Received messages whose bytes start with `start` (b"SIP/2.0 200", b"NOTIFY")."""
        return [r for r in self.received if r.data.startswith(start)]

    def close(self) -> None:
        self.run(self.pool.close())
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()
