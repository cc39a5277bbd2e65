"""RFC 3263 server location on made-up DNS answers: which look-ups the resolver
asks for, in which order it lists the targets, and how it fails."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest
from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.dns_answer import Answer, DnsStatus, Naptr, Query, RdType, Record, Srv
from presence_b2b.shard.resolver import (
    DnsFailure,
    Resolution,
    Resolved,
    Resolver,
    ResolverPolicy,
    SipTarget,
)

from presence_b2b.config import DnsSettings

UDP, TCP, TLS = Transport.UDP, Transport.TCP, Transport.TLS
NAPTR, SRV, A, AAAA = RdType.NAPTR, RdType.SRV, RdType.A, RdType.AAAA

Zone = Mapping[tuple[str, RdType], Sequence[Record] | DnsStatus]

# presence.test as the integration tests' dnsmasq serves it.
PRESENCE: Zone = {
    ("presence.test", NAPTR): [
        Naptr(20, 50, "s", "SIP+D2U", "", "_sip._udp.presence.test"),
        Naptr(10, 50, "s", "SIP+D2T", "", "_sip._tcp.presence.test"),
    ],
    ("_sip._tcp.presence.test", SRV): [Srv(10, 10, 5072, "tcp1.presence.test")],
    ("_sip._udp.presence.test", SRV): [
        Srv(20, 10, 5071, "b.presence.test"),
        Srv(10, 10, 5070, "a.presence.test"),
    ],
    ("tcp1.presence.test", A): ["127.0.0.3"],
    ("a.presence.test", A): ["127.0.0.1"],
    ("b.presence.test", A): ["127.0.0.2"],
    ("b.presence.test", AAAA): ["::1"],
}


def answer(zone: Zone, query: Query, ttl: float = 60.0) -> Answer:
    found = zone.get((query.name, query.rdtype))
    if isinstance(found, DnsStatus):
        return Answer(query, found)
    if found is None:
        names = {name for name, _ in zone}
        return Answer(query, DnsStatus.NODATA if query.name in names else DnsStatus.NXDOMAIN)
    return Answer(query, DnsStatus.OK, tuple(found), ttl)


def run(
    resolver: Resolver, target: SipTarget, zone: Zone, now: float = 0.0
) -> tuple[Resolved | DnsFailure | None, list[str]]:
    """Answer every query from ``zone`` until the resolution is done; also the queries asked."""
    resolution, step = resolver.resolve(target, now)
    asked: list[str] = []
    pending = list(step.queries)
    while pending:
        query = pending.pop(0)
        asked.append(str(query))
        pending += resolver.on_answer(answer(zone, query), now).queries
    return resolution.result, asked


def targets(result: Resolved | DnsFailure | None) -> list[tuple[str, str, int | None]]:
    assert isinstance(result, Resolved), result
    return [(t.transport.value, t.host, t.port) for t in result.targets]


def resolver(**policy: object) -> Resolver:
    return Resolver(ResolverPolicy(**policy), rng=random.Random(1))  # type: ignore[arg-type]


# ------------------------------------------------------------ no look-up at all


def test_an_ip_literal_needs_no_lookup_and_gets_udp_on_5060() -> None:
    result, asked = run(resolver(), SipTarget.from_uri("sip:alice@192.0.2.1"), {})
    assert asked == []
    assert targets(result) == [("udp", "192.0.2.1", 5060)]


def test_an_ipv6_literal_keeps_its_port_and_loses_its_brackets() -> None:
    result, _ = run(resolver(), SipTarget.from_uri("sip:alice@[::1]:5099"), {})
    assert targets(result) == [("udp", "::1", 5099)]


def test_a_sips_literal_is_tls_on_5061() -> None:
    result, _ = run(resolver(), SipTarget.from_uri("sips:alice@192.0.2.1"), {})
    assert targets(result) == [("tls", "192.0.2.1", 5061)]


def test_a_literal_is_done_in_the_call_that_starts_it() -> None:
    resolution, step = resolver().resolve(SipTarget.from_uri("sip:192.0.2.1;transport=tcp"), 0.0)
    assert step.queries == [] and step.done == [resolution]
    assert targets(resolution.result) == [("tcp", "192.0.2.1", 5060)]


def test_maddr_wins_over_the_host() -> None:
    result, asked = run(resolver(), SipTarget.from_uri("sip:a@presence.test;maddr=192.0.2.7"), {})
    assert asked == []
    assert targets(result) == [("udp", "192.0.2.7", 5060)]


# ------------------------------------------------------------ the RFC 3263 steps


def test_without_port_or_transport_naptr_chooses_and_its_order_wins() -> None:
    result, asked = run(resolver(), SipTarget.from_uri("sip:alice@presence.test"), PRESENCE)
    assert asked[0] == "NAPTR presence.test"
    assert targets(result) == [
        ("tcp", "127.0.0.3", 5072),
        ("udp", "127.0.0.1", 5070),
        ("udp", "::1", 5071),
        ("udp", "127.0.0.2", 5071),
    ]


def test_naptr_services_we_do_not_support_are_skipped() -> None:
    result, asked = run(resolver(transports=frozenset({UDP})), SipTarget("presence.test"), PRESENCE)
    assert "SRV _sip._tcp.presence.test" not in asked
    assert [t[0] for t in targets(result)] == ["udp", "udp", "udp"]


def test_a_given_transport_skips_naptr_and_asks_that_srv() -> None:
    result, asked = run(resolver(), SipTarget.from_uri("sip:presence.test;transport=tcp"), PRESENCE)
    assert asked[0] == "SRV _sip._tcp.presence.test"
    assert "NAPTR presence.test" not in asked
    assert targets(result) == [("tcp", "127.0.0.3", 5072)]


def test_an_explicit_port_skips_naptr_and_srv() -> None:
    result, asked = run(resolver(), SipTarget.from_uri("sip:a.presence.test:5099"), PRESENCE)
    assert sorted(asked) == ["A a.presence.test", "AAAA a.presence.test"]
    assert targets(result) == [("udp", "127.0.0.1", 5099)]


def test_sips_asks_only_for_the_tls_service() -> None:
    zone: Zone = {
        ("secure.test", SRV): DnsStatus.NODATA,
        ("_sips._tcp.secure.test", SRV): [Srv(0, 0, 5061, "tls.secure.test")],
        ("tls.secure.test", A): ["192.0.2.5"],
    }
    result, asked = run(
        resolver(transports=frozenset(Transport)), SipTarget.from_uri("sips:secure.test"), zone
    )
    assert asked[0] == "SRV _sips._tcp.secure.test"
    assert targets(result) == [("tls", "192.0.2.5", 5061)]


def test_without_naptr_srv_is_tried_for_each_transport_we_support() -> None:
    zone: Zone = {
        ("_sip._tcp.srvonly.test", SRV): [Srv(10, 0, 5090, "h.srvonly.test")],
        ("h.srvonly.test", A): ["192.0.2.9"],
    }
    result, asked = run(resolver(), SipTarget("srvonly.test"), zone)
    assert asked[:3] == [
        "NAPTR srvonly.test",
        "SRV _sip._udp.srvonly.test",
        "SRV _sip._tcp.srvonly.test",
    ]
    assert targets(result) == [("tcp", "192.0.2.9", 5090)]


def test_without_naptr_or_srv_the_names_own_address_on_udp_5060() -> None:
    zone: Zone = {("plain.test", A): ["192.0.2.20"]}
    result, _ = run(resolver(), SipTarget("plain.test"), zone)
    assert targets(result) == [("udp", "192.0.2.20", 5060)]


def test_lookups_of_one_step_are_asked_together() -> None:
    r = resolver()
    _, step = r.resolve(SipTarget("srvonly.test"), 0.0)
    step = r.on_answer(Answer(Query("srvonly.test", NAPTR), DnsStatus.NXDOMAIN), 0.0)
    assert [str(q) for q in step.queries] == [
        "SRV _sip._udp.srvonly.test",
        "SRV _sip._tcp.srvonly.test",
    ]


def test_address_types_follow_the_policy_order() -> None:
    zone: Zone = {("dual.test", A): ["192.0.2.1"], ("dual.test", AAAA): ["2001:db8::1"]}
    v6_first, _ = run(resolver(), SipTarget("dual.test", 5060), zone)
    v4_only, asked = run(resolver(address_types=(A,)), SipTarget("dual.test", 5060), zone)
    assert [t[1] for t in targets(v6_first)] == ["2001:db8::1", "192.0.2.1"]
    assert [t[1] for t in targets(v4_only)] == ["192.0.2.1"]
    assert asked == ["A dual.test"]


def test_srv_targets_of_one_priority_follow_the_injected_rng() -> None:
    zone: Zone = {
        ("_sip._udp.w.test", SRV): [
            Srv(10, 90, 5080, "heavy.w.test"),
            Srv(10, 10, 5081, "light.w.test"),
        ],
        ("heavy.w.test", A): ["192.0.2.10"],
        ("light.w.test", A): ["192.0.2.11"],
    }
    firsts = [
        targets(run(Resolver(rng=random.Random(seed)), SipTarget("w.test", None, UDP), zone)[0])[0][
            1
        ]
        for seed in range(200)
    ]
    assert 0.8 < firsts.count("192.0.2.10") / 200 < 0.98


# ------------------------------------------------------------ failures


def test_nxdomain_is_a_failure_naming_the_name() -> None:
    result, _ = run(resolver(), SipTarget.from_uri("sip:alice@nope.test"), {})
    assert result == DnsFailure("nope.test", AAAA, DnsStatus.NXDOMAIN)
    assert result.detail == "nope.test: nxdomain (AAAA)"


def test_a_timeout_ends_the_resolution_at_once() -> None:
    zone: Zone = {("slow.test", NAPTR): DnsStatus.TIMEOUT}
    result, asked = run(resolver(), SipTarget("slow.test"), zone)
    assert asked == ["NAPTR slow.test"]
    assert result == DnsFailure("slow.test", NAPTR, DnsStatus.TIMEOUT)


def test_an_srv_timeout_is_ignored_when_another_srv_of_the_step_answered() -> None:
    zone: Zone = {
        ("_sip._udp.half.test", SRV): DnsStatus.TIMEOUT,
        ("_sip._tcp.half.test", SRV): [Srv(10, 0, 5090, "h.half.test")],
        ("h.half.test", A): ["192.0.2.9"],
    }
    result, _ = run(resolver(), SipTarget("half.test"), zone)
    assert targets(result) == [("tcp", "192.0.2.9", 5090)]


def test_srv_timeouts_with_nothing_usable_end_the_resolution_before_any_address() -> None:
    zone: Zone = {
        ("_sip._udp.dead.test", SRV): DnsStatus.TIMEOUT,
        ("_sip._tcp.dead.test", SRV): DnsStatus.NXDOMAIN,
        ("dead.test", A): ["192.0.2.1"],
    }
    result, asked = run(resolver(), SipTarget("dead.test"), zone)
    assert result == DnsFailure("_sip._udp.dead.test", SRV, DnsStatus.TIMEOUT)
    assert not [q for q in asked if q.startswith(("A ", "AAAA "))]


def test_a_servfail_on_naptr_reads_as_no_naptr() -> None:
    zone: Zone = {("odd.test", NAPTR): DnsStatus.SERVFAIL, ("odd.test", A): ["192.0.2.30"]}
    result, _ = run(resolver(), SipTarget("odd.test"), zone)
    assert targets(result) == [("udp", "192.0.2.30", 5060)]


def test_a_server_error_is_reported_before_a_missing_record() -> None:
    zone: Zone = {("half.test", A): DnsStatus.SERVFAIL, ("half.test", AAAA): DnsStatus.NODATA}
    result, _ = run(resolver(), SipTarget("half.test", 5060), zone)
    assert result == DnsFailure("half.test", A, DnsStatus.SERVFAIL)


def test_an_srv_target_of_dot_means_the_service_is_not_offered() -> None:
    zone: Zone = {
        ("_sip._udp.none.test", SRV): [Srv(0, 0, 0, ".")],
        ("none.test", A): ["192.0.2.1"],
    }
    result, _ = run(resolver(), SipTarget("none.test", None, UDP), zone)
    assert result == DnsFailure("_sip._udp.none.test", SRV, DnsStatus.NODATA)


# ------------------------------------------------------------ sharing and cache


def test_two_resolutions_of_one_name_share_each_lookup() -> None:
    r = resolver()
    first, step1 = r.resolve(SipTarget("plain.test", 5060), 0.0)
    second, step2 = r.resolve(SipTarget("plain.test", 5060), 0.0)
    assert len(step1.queries) == 2 and step2.queries == []
    r.on_answer(Answer(Query("plain.test", AAAA), DnsStatus.NODATA), 0.0)
    step = r.on_answer(Answer(Query("plain.test", A), DnsStatus.OK, ("192.0.2.1",), 60), 0.0)
    assert step.done == [first, second]


def test_a_cached_answer_is_not_asked_again_until_its_ttl_ends() -> None:
    r = resolver()
    zone: Zone = {("plain.test", A): ["192.0.2.20"]}
    _, first = run(r, SipTarget("plain.test", 5060), zone, now=0.0)
    _, second = run(r, SipTarget("plain.test", 5060), zone, now=29.0)  # AAAA: NODATA for 30 s
    _, third = run(r, SipTarget("plain.test", 5060), zone, now=61.0)
    assert len(first) == 2 and second == [] and len(third) == 2


def test_nxdomain_is_cached_too() -> None:
    r = resolver()
    run(r, SipTarget("nope.test", 5060), {}, now=0.0)
    result, asked = run(r, SipTarget("nope.test", 5060), {}, now=1.0)
    assert asked == [] and isinstance(result, DnsFailure)


def test_a_cancelled_resolution_is_never_finished() -> None:
    r = resolver()
    kept, _ = r.resolve(SipTarget("plain.test", 5060), 0.0)
    dropped, _ = r.resolve(SipTarget("plain.test", 5060), 0.0)
    r.cancel(dropped)
    r.on_answer(Answer(Query("plain.test", AAAA), DnsStatus.NODATA), 0.0)
    step = r.on_answer(Answer(Query("plain.test", A), DnsStatus.OK, ("192.0.2.1",), 60), 0.0)
    assert step.done == [kept] and dropped.result is None


def test_cache_hits_misses_and_joins_are_counted() -> None:
    m = ShardMetrics(MetricsBlock.create("0"))
    r = Resolver(metrics=m)
    zone: Zone = {("plain.test", A): ["192.0.2.20"]}
    run(r, SipTarget("plain.test", 5060), zone)  # 2 misses
    r.resolve(SipTarget("plain.test", 5060), 1.0)  # A hit, AAAA negative hit
    r.resolve(SipTarget("other.test", 5060), 1.0)  # 2 misses
    r.resolve(SipTarget("other.test", 5060), 1.0)  # 2 joins
    counts = {
        v: m.dns_cache_lookups.labels(v).value for v in ("hit", "negative-hit", "miss", "joined")
    }
    assert counts == {"hit": 1, "negative-hit": 1, "miss": 4, "joined": 2}


# ------------------------------------------------------------ failover


def test_failover_walks_the_resolved_list_and_other_requests_skip_the_failed_target() -> None:
    r = resolver()
    result, _ = run(r, SipTarget("presence.test"), PRESENCE)
    assert isinstance(result, Resolved)
    walk = r.failover(result, now=0.0)
    first = walk.current
    second = walk.next(now=1.0, retry_after=60.0)
    assert first == Destination(TCP, "127.0.0.3", 5072)
    assert second == Destination(UDP, "127.0.0.1", 5070)
    assert r.failover(result, now=2.0).current == second
    assert r.failover(result, now=61.0).current == first


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:alice@Presence.Test", SipTarget("presence.test")),
        ("sip:alice@presence.test:5080", SipTarget("presence.test", 5080)),
        ("sip:alice@presence.test;transport=TCP", SipTarget("presence.test", None, TCP)),
        ("sip:alice@presence.test;transport=sctp", SipTarget("presence.test")),
        ("sips:alice@presence.test;transport=udp", SipTarget("presence.test", None, TLS, True)),
        ("<sip:[2001:db8::1]:5070>", SipTarget("2001:db8::1", 5070)),
    ],
)
def test_a_uri_becomes_a_target(uri: str, expected: SipTarget) -> None:
    assert SipTarget.from_uri(uri) == expected


def test_a_destination_fixes_the_transport() -> None:
    target = SipTarget.from_destination(Destination(TLS, "Presence.test", None))
    assert target == SipTarget("presence.test", None, TLS, True)


def test_the_policy_takes_the_cache_size_from_the_dns_settings() -> None:
    policy = ResolverPolicy.from_settings(DnsSettings(cache_size=5), address_types=(A,))
    assert policy.cache.size == 5 and policy.address_types == (A,)


def test_resolution_objects_carry_the_callers_context() -> None:
    resolution, _ = resolver().resolve(SipTarget("192.0.2.1"), 0.0, context="sub-7")
    assert isinstance(resolution, Resolution) and resolution.context == "sub-7"


def test_an_address_is_literal_and_a_name_is_not_however_often_asked() -> None:
    for _ in range(2):
        assert SipTarget("192.0.2.7").is_literal
        assert SipTarget("2001:db8::1").is_literal
        assert not SipTarget("example.com").is_literal
        assert not SipTarget("192.0.2.7.example.com").is_literal
