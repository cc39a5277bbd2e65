"""A shard's TCP/TLS side and resolver built from the `[sip]` and `[dns]` configuration.

The one place that reads the configuration for the network, so the shard only
calls `open_network` at start.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from ..config import DnsSettings, SipSettings
from ..metrics.shard import ShardMetrics
from ..sip.framing import FramingLimits
from .connections import ConnectionPool, Received, SendFailure, StreamSettings
from .destination import Transport
from .dns import DnsLookup, ResolverDriver
from .dns_answer import RdType
from .network import Network
from .resolver import Resolver, ResolverPolicy
from .tls import client_context, server_context

__all__ = ["listen_ports", "open_network", "open_streams", "stream_settings"]


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
            for address in sip.listen:
                await pool.listen(transport, address, port)
    except BaseException:
        await pool.close()
        raise
    return pool


async def open_network(
    network: Network,
    sip: SipSettings,
    dns: DnsSettings,
    index: int,
    *,
    advertised_host: str,
    clock: Callable[[], float],
    metrics: ShardMetrics | None = None,
) -> None:
    """Give a shard's network its streams (listeners bound: OSError/SSLError if
    one cannot be) and its resolver, and the host:ports its Vias name."""
    network.pool = await open_streams(
        asyncio.get_running_loop(),
        sip,
        index,
        network.stream_message,
        network.stream_failed,
        metrics=metrics,
    )
    v6 = socket.AF_INET6 in network.families
    address_types = (RdType.AAAA, RdType.A) if v6 else (RdType.A,)
    policy = ResolverPolicy.from_settings(
        dns,
        transports=frozenset({Transport.UDP, Transport.TCP, Transport.TLS}),
        address_types=address_types,
    )
    network.resolver = ResolverDriver(
        Resolver(policy, metrics=metrics), DnsLookup(dns, metrics=metrics), clock, network.resolved
    )
    host = f"[{advertised_host}]" if ":" in advertised_host else advertised_host
    network.hostport = f"{host}:{sip.port + index}"
    network.tls_hostport = f"{host}:{sip.tls_port + index}"
    network.listening = frozenset(listen_ports(sip, index))
    network.target_budget = 8 * sip.t1  # RFC 3263 §4.3: a few seconds, not all of Timer F
