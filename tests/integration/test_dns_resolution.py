"""The resolver and its look-up adapter against a real DNS server: dnsmasq on 127.0.0.1.

Each test runs the resolver on a uvloop event loop, as a shard does, with its
look-ups going through c-ares to the dnsmasq of the `dns_server` fixture (or to
a socket that never answers). The zone is tests.peers.dns.ZONE.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import uvloop
from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.dns import DnsLookup, ResolverDriver
from presence_b2b.shard.dns_answer import DnsStatus, RdType
from presence_b2b.shard.resolver import (
    DnsFailure,
    Resolution,
    Resolved,
    Resolver,
    ResolverPolicy,
    SipTarget,
)

from presence_b2b.config import DnsSettings
from tests.peers.dns import DnsServer, SilentDnsServer

pytestmark = [pytest.mark.integration]

T = TypeVar("T")
UDP, TCP = Transport.UDP, Transport.TCP


class Shard:
    """A resolver, its adapter and its driver on one loop, the way a shard holds them."""

    def __init__(
        self, settings: DnsSettings, *, seed: int = 1, metrics: ShardMetrics | None = None
    ) -> None:
        self.settings = settings
        self.seed = seed
        self.metrics = metrics
        self.finished: list[Resolution] = []
        self.resolver = Resolver(
            ResolverPolicy.from_settings(settings), rng=random.Random(seed), metrics=metrics
        )

    def run(self, body: Callable[[ResolverDriver], Awaitable[T]]) -> T:
        async def main() -> T:
            lookup = DnsLookup(self.settings, metrics=self.metrics)
            loop = lookup.loop
            driver = ResolverDriver(self.resolver, lookup, loop.time, self.finished.append)
            try:
                return await body(driver)
            finally:
                await lookup.close()

        return uvloop.run(main())

    def resolve(self, uri: str) -> Resolved | DnsFailure:
        return self.run(lambda d: d.resolve_and_wait(SipTarget.from_uri(uri)))


def settings_for(server: DnsServer | SilentDnsServer, **more: object) -> DnsSettings:
    return DnsSettings(servers=(server.server,), **more)  # type: ignore[arg-type]


def targets(result: Resolved | DnsFailure) -> list[Destination]:
    assert isinstance(result, Resolved), result
    return list(result.targets)


def test_srv_orders_targets_by_priority_with_aaaa_before_a(dns_server: DnsServer) -> None:
    result = Shard(settings_for(dns_server)).resolve("sip:alice@presence.test;transport=udp")
    assert targets(result) == [
        Destination(UDP, "127.0.0.1", 5070),
        Destination(UDP, "::1", 5071),
        Destination(UDP, "127.0.0.2", 5071),
    ]


def test_naptr_chooses_tcp_first_when_its_order_says_so(dns_server: DnsServer) -> None:
    result = Shard(settings_for(dns_server)).resolve("sip:alice@presence.test")
    assert targets(result)[0] == Destination(TCP, "127.0.0.3", 5072)
    assert [t.transport for t in targets(result)[1:]] == [UDP, UDP, UDP]
    assert "NAPTR presence.test" in dns_server.queries()


def test_weights_of_one_priority_share_the_first_choice(dns_server: DnsServer) -> None:
    shard = Shard(settings_for(dns_server), seed=11)

    async def many(driver: ResolverDriver) -> list[Resolved | DnsFailure]:
        target = SipTarget.from_uri("sip:watcher@weighted.test")
        return [await driver.resolve_and_wait(target) for _ in range(400)]

    firsts = [targets(r)[0].host for r in shard.run(many)]
    assert 0.84 < firsts.count("127.0.0.10") / len(firsts) < 0.96  # weights 90 and 10


def test_an_ipv6_only_name_resolves_to_its_aaaa(dns_server: DnsServer) -> None:
    result = Shard(settings_for(dns_server)).resolve("sip:alice@v6.test:5090")
    assert targets(result) == [Destination(UDP, "::1", 5090)]


def test_nxdomain_is_a_dns_failure_naming_the_name(dns_server: DnsServer) -> None:
    result = Shard(settings_for(dns_server)).resolve("sip:alice@nope.presence.test")
    assert isinstance(result, DnsFailure)
    assert (result.name, result.status) == ("nope.presence.test", DnsStatus.NXDOMAIN)
    assert result.rdtype in (RdType.A, RdType.AAAA)


def test_a_name_outside_the_servers_zones_is_a_refused_dns_failure(
    dns_server: DnsServer,
) -> None:
    metrics = ShardMetrics(MetricsBlock.create("0"))
    shard = Shard(settings_for(dns_server, attempts=1), metrics=metrics)
    result = shard.resolve("sip:alice@outside.example")
    assert result == DnsFailure("outside.example", RdType.AAAA, DnsStatus.REFUSED)
    assert metrics.dns_lookups.labels("A", "error").value == 1


def test_a_silent_server_fails_with_timeout_within_timeout_times_attempts() -> None:
    silent = SilentDnsServer()
    try:
        shard = Shard(settings_for(silent, timeout=0.3, attempts=2))
        started = time.monotonic()
        result = shard.resolve("sip:alice@presence.test")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert result == DnsFailure("presence.test", RdType.NAPTR, DnsStatus.TIMEOUT)
    assert 0.5 <= elapsed < 0.6 + 0.3  # one look-up's bound, plus the loop's start and stop


def test_a_second_resolution_is_answered_from_the_cache(dns_server: DnsServer) -> None:
    metrics = ShardMetrics(MetricsBlock.create("0"))
    shard = Shard(settings_for(dns_server), metrics=metrics)
    asked_before = len(dns_server.queries())

    async def twice(driver: ResolverDriver) -> Resolution:
        await driver.resolve_and_wait(SipTarget.from_uri("sip:alice@plain.test"))
        return driver.resolve(SipTarget.from_uri("sip:bob@plain.test"))

    second = shard.run(twice)
    assert second.result == Resolved((Destination(UDP, "127.0.0.20", 5060),))  # at once
    assert sorted(dns_server.queries()[asked_before:]) == [
        "A plain.test",
        "AAAA plain.test",
        "NAPTR plain.test",
        "SRV _sip._tcp.plain.test",
        "SRV _sip._udp.plain.test",
    ]
    cache = {v: metrics.dns_cache_lookups.labels(v).value for v in ("hit", "negative-hit", "miss")}
    assert cache == {"hit": 1, "negative-hit": 4, "miss": 5}
    assert metrics.dns_lookup_seconds.count == 5


def test_lookups_are_counted_by_type_and_result(dns_server: DnsServer) -> None:
    metrics = ShardMetrics(MetricsBlock.create("0"))
    Shard(settings_for(dns_server), metrics=metrics).resolve("sip:alice@nope.presence.test")
    assert metrics.dns_lookups.labels("NAPTR", "nxdomain").value == 1
    assert metrics.dns_lookups.labels("A", "nxdomain").value == 1
