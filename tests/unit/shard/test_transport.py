"""The driver carries out the engine's output and turns send errors into inputs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from presence_b2b.presence.status import Failure, FailureKind
from presence_b2b.shard.engine import Engine, LocalEndpoint
from presence_b2b.shard.output import Output
from presence_b2b.shard.transport import EngineDriver

from presence_b2b.config import B2BParams, SipSettings

RECORD = "sip:alice@127.0.0.1:5090"


class FakeUdp:
    """Stands in for uvloop's UDPTransport; ``error`` is what sendto raises."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> None:
        return None


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _driver(loop: asyncio.AbstractEventLoop, udp: FakeUdp) -> tuple[EngineDriver, list[Output]]:
    driver = EngineDriver(loop, family=socket.AF_INET)
    driver.connection_made(udp)  # type: ignore[arg-type]
    driver.engine = Engine(
        B2BParams(), SipSettings(), LocalEndpoint("127.0.0.1", 5070), clock=driver.clock
    )
    outputs: list[Output] = []
    driver.consumer = lambda out, arrived: outputs.append(out)
    return driver, outputs


def test_datagrams_go_out_to_their_destination_and_the_timer_is_armed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    udp = FakeUdp()
    driver, outputs = _driver(loop, udp)
    assert driver.engine is not None
    driver.engine.subscribe(1, RECORD, "sip:bob@x")
    driver.flush()
    [(data, addr)] = udp.sent
    assert data.startswith(b"SUBSCRIBE ") and addr == ("127.0.0.1", 5090)
    assert driver._handle is not None and outputs == []
    driver.cancel()


def test_a_value_error_from_sendto_is_a_transport_failure_not_an_exception(
    loop: asyncio.AbstractEventLoop,
) -> None:
    driver, outputs = _driver(loop, FakeUdp(ValueError("bad address")))
    assert driver.engine is not None
    driver.engine.subscribe(1, RECORD, "sip:bob@x")
    driver.flush()
    [failure] = [m for out in outputs for m in out.messages]
    assert isinstance(failure, Failure) and failure.kind is FailureKind.TRANSPORT
    assert "ValueError" in failure.detail and failure.retry_in is not None
    assert driver._handle is not None  # the retry is armed
    driver.cancel()
