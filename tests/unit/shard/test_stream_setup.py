"""A shard's TCP/TLS side as the [sip] configuration describes it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import uvloop
from presence_b2b.shard.connections import Received
from presence_b2b.shard.destination import Transport
from presence_b2b.shard.stream_setup import listen_ports, open_streams

from presence_b2b import config
from tests.peers.tls_certs import Pki

OPTIONS = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"


def free_tcp_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_shard_i_listens_on_port_plus_i_for_tcp_and_tls_port_plus_i_for_tls() -> None:
    sip = config.from_mapping(
        {
            "sip": {
                "port": 6000,
                "tls_port": 7000,
                "transports": ["udp", "tcp", "tls"],
                "tls": {"cert_file": "/b2b.pem"},
            }
        }
    ).sip
    assert listen_ports(sip, 2) == {Transport.TCP: 6002, Transport.TLS: 7002}


def test_udp_alone_opens_no_listener() -> None:
    sip = config.from_mapping({"sip": {"transports": ["udp"]}}).sip
    assert listen_ports(sip, 0) == {}


def test_open_streams_binds_the_listeners_and_hands_over_what_arrives(tmp_path: Path) -> None:
    files = Pki(tmp_path).server("127.0.0.1")
    tcp, tls = free_tcp_ports(2)
    sip = config.from_mapping(
        {
            "sip": {
                "port": tcp,
                "tls_port": tls,
                "transports": ["udp", "tcp", "tls"],
                "tls": {"cert_file": str(files.cert), "key_file": str(files.key)},
            }
        }
    ).sip
    got: list[Received] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = await open_streams(loop, sip, 0, got.append, lambda failure: None)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", tcp)
            writer.write(OPTIONS)
            for _ in range(500):
                if got:
                    break
                await asyncio.sleep(0.01)
            writer.close()
            _, writer = await asyncio.open_connection("127.0.0.1", tls)  # TLS port bound
            writer.close()
        finally:
            await pool.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    assert [r.data for r in got] == [OPTIONS]
