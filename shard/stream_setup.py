"""A shard's TCP/TLS side built from the `[sip]` configuration.

The one place that reads the configuration for streams, so the driver only
calls `open_streams` at start and `ConnectionPool.close` at stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..config import SipSettings
from ..metrics.shard import ShardMetrics
from ..sip.framing import FramingLimits
from .connections import ConnectionPool, Received, SendFailure, StreamSettings
from .destination import Transport
from .tls import client_context, server_context

__all__ = ["listen_ports", "open_streams", "stream_settings"]


def stream_settings(sip: SipSettings) -> StreamSettings:
    """Timeouts, keep-alive and framing limits of every connection of a shard."""
    return StreamSettings(
        connect_timeout=sip.connect_timeout,
        keepalive_interval=sip.keepalive_interval,
        limits=FramingLimits(max_message_size=sip.max_message_size, read_timeout=64 * sip.t1),
    )


def listen_ports(sip: SipSettings, index: int) -> dict[Transport, int]:
    """Where shard `index` accepts connections: TCP on port + i, TLS on tls_port + i."""
    ports: dict[Transport, int] = {}
    if "tcp" in sip.transports:
        ports[Transport.TCP] = sip.port + index
    if "tls" in sip.transports:
        ports[Transport.TLS] = sip.tls_port + index
    return ports


async def open_streams(
    loop: asyncio.AbstractEventLoop,
    sip: SipSettings,
    index: int,
    on_message: Callable[[Received], None],
    on_failure: Callable[[SendFailure], None],
    *,
    metrics: ShardMetrics | None = None,
) -> ConnectionPool:
    """The shard's pool with its listeners bound; OSError/SSLError if one cannot be.

    A TLS client context is made even when "tls" is not among the transports:
    a sips: URI or a tls target found by the resolver still needs one."""
    tls = sip.tls
    tls_server = None
    if "tls" in sip.transports:
        tls_server = server_context(cert_file=tls.cert_file, key_file=tls.key_file)
    pool = ConnectionPool(
        loop,
        on_message,
        on_failure,
        settings=stream_settings(sip),
        tls_client=client_context(
            ca_file=tls.ca_file,
            cert_file=tls.cert_file,
            key_file=tls.key_file,
            verify_server=tls.verify_server,
        ),
        tls_server=tls_server,
        metrics=metrics,
    )
    try:
        for transport, port in listen_ports(sip, index).items():
            await pool.listen(transport, sip.listen, port)
    except BaseException:
        await pool.close()
        raise
    return pool
