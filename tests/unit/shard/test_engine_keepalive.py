"""A CRLF keep-alive is not a parse error."""

from __future__ import annotations

from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.shard.engine import Engine, LocalEndpoint

from presence_b2b.config import B2BParams, SipSettings


def test_crlf_keepalives_are_dropped_without_counting_an_error() -> None:
    sent: list[bytes] = []
    engine = Engine(
        B2BParams(),
        SipSettings(),
        LocalEndpoint("127.0.0.1", 5070),
        clock=lambda: 0.0,
        send=lambda data, addr: sent.append(data),
        deliver=lambda msg: None,
        metrics=ShardMetrics(MetricsBlock.create("0")),
    )
    for data in (b"\r\n\r\n", b"\r\n", b"\n"):
        engine.datagram_received(data, ("127.0.0.1", 5090))
    assert sent == []
    assert engine.m.errors.labels("parse").value == 0
    assert all(c.value == 0 for c in engine._m_parse.values())
    engine.datagram_received(b"\x00garbage", ("127.0.0.1", 5090))
    assert engine.m.errors.labels("parse").value == 1
