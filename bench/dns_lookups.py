"""DNS look-ups on the shard's event loop: dnspython against aiodns (c-ares).

Both libraries query the test dnsmasq (tests/peers/dns.py) on 127.0.0.1 from a
uvloop event loop, the way a shard would. Reported per client:

* ``serial_us``: median microseconds of one SRV look-up at a time (latency);
* ``burst_per_s``: look-ups per second with ``--concurrency`` in flight (a shard
  resolving many subscriptions' domains after a restart);
* ``cpu_us``: CPU microseconds of this process per look-up in the burst,
  every thread included (c-ares runs its own);
* the adapter (presence_b2b.shard.dns.DnsLookup, on aiodns) on the same path.

Clients: ``dnspython`` (dns.asyncresolver.Resolver.resolve, no cache),
``dnspython-udp`` (dns.asyncquery.udp: one message, no resolver logic),
``aiodns`` (DNSResolver.query_dns). dnsmasq serves the zone with TTL 0 here, so
c-ares's own query cache (on by default in the c-ares pycares 5 bundles, with
no switch in pycares) keeps nothing and every client asks the server every time. Every figure
is the median of ``--reps`` repetitions. The last line printed is one JSON
object with the figures.

dnspython comes with the ``bench`` extra; without it only aiodns and the
adapter are measured.

Usage: python bench/dns_lookups.py [--quick] [--reps N] [--count N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiodns
import uvloop
from presence_b2b.shard.dns import DnsLookup
from presence_b2b.shard.dns_answer import Query, RdType

from presence_b2b.config import DnsSettings
from tests.peers.dns import DnsServer
from tests.peers.ports import LOOPBACK

NAME = "_sip._udp.presence.test"

Lookup = Callable[[], Awaitable[object]]


def dnspython_client(port: int) -> Lookup:
    import dns.asyncresolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [LOOPBACK]
    resolver.port = port
    resolver.timeout = resolver.lifetime = 2.0

    async def lookup() -> object:
        return await resolver.resolve(NAME, "SRV", search=False, raise_on_no_answer=False)

    return lookup


def dnspython_udp_client(port: int) -> Lookup:
    import dns.asyncquery
    import dns.message
    import dns.rdatatype

    async def lookup() -> object:
        query = dns.message.make_query(NAME, dns.rdatatype.SRV)
        return await dns.asyncquery.udp(query, LOOPBACK, timeout=2.0, port=port)

    return lookup


def aiodns_client(port: int) -> Lookup:
    resolver = aiodns.DNSResolver(nameservers=[f"{LOOPBACK}:{port}"], timeout=2.0, tries=1)

    async def lookup() -> object:
        return await resolver.query_dns(NAME, "SRV")

    return lookup


def adapter_client(port: int) -> Lookup:
    adapter = DnsLookup(DnsSettings(servers=(f"{LOOPBACK}:{port}",), timeout=2.0, attempts=1))

    async def lookup() -> object:
        answer = await adapter.lookup(Query(NAME, RdType.SRV))
        if not answer.records:
            raise RuntimeError(f"no SRV records: {answer}")
        return answer

    return lookup


CLIENTS: dict[str, Callable[[int], Lookup]] = {
    "dnspython": dnspython_client,
    "dnspython-udp": dnspython_udp_client,
    "aiodns": aiodns_client,
    "adapter": adapter_client,
}
if importlib.util.find_spec("dns") is None:  # the bench extra is not installed
    del CLIENTS["dnspython"], CLIENTS["dnspython-udp"]


async def serial_us(lookup: Lookup, count: int) -> float:
    """Median microseconds of one look-up at a time."""
    times: list[float] = []
    for _ in range(count):
        t0 = time.perf_counter()
        await lookup()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


async def burst(lookup: Lookup, count: int, concurrency: int) -> tuple[float, float]:
    """Look-ups per second and CPU microseconds per look-up with ``concurrency`` in flight."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await lookup()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return count / wall, cpu / count * 1e6


async def measure(name: str, port: int, count: int, concurrency: int) -> dict[str, float]:
    lookup = CLIENTS[name](port)
    for _ in range(20):  # warm up: sockets, imports, first-use caches
        await lookup()
    serial = await serial_us(lookup, count)
    rate, cpu = await burst(lookup, count, concurrency)
    return {"serial_us": serial, "burst_per_s": rate, "cpu_us": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a second or two")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000, help="look-ups per measurement")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    reps, count = (1, 100) if args.quick else (args.reps, args.count)

    figures: dict[str, dict[str, float]] = {}
    server = DnsServer(ttl=0).start()
    try:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
        for _ in range(reps):
            for name in CLIENTS:  # interleaved, so machine noise hits every client alike
                runs[name].append(uvloop.run(measure(name, server.port, count, args.concurrency)))
        for name, results in runs.items():
            figures[name] = {
                key: round(statistics.median(r[key] for r in results), 1) for key in results[0]
            }
            f = figures[name]
            print(
                f"{name:14} serial {f['serial_us']:8.1f} us   burst {f['burst_per_s']:8.0f}/s"
                f"   cpu {f['cpu_us']:7.1f} us/look-up"
            )
    finally:
        server.cleanup()
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
