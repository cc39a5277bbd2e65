"""Random DNS answers against the resolver, checked against what its driver relies on.

Whatever a zone holds (NAPTR pointing anywhere, SRV loops back to the domain,
errors and timeouts anywhere), answered in any order: every resolution
finishes, no query is asked twice while it is under way, and a result lists
only addresses the zone gave, on the transports we support or the URI named.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_b2b.shard.destination import Transport
from presence_b2b.shard.dns_answer import Answer, DnsStatus, Naptr, Query, RdType, Record, Srv
from presence_b2b.shard.resolver import DnsFailure, Resolved, Resolver, SipTarget

NAMES = [
    "d.test",
    "_sip._udp.d.test",
    "_sip._tcp.d.test",
    "_sips._tcp.d.test",
    "h1.d.test",
    "h2.d.test",
]
HOSTS = ["h1.d.test", "h2.d.test", "d.test", "."]
ADDRESSES = {RdType.A: ["192.0.2.1", "192.0.2.2"], RdType.AAAA: ["2001:db8::1"]}
FAILURES = [s for s in DnsStatus if s is not DnsStatus.OK]

naptr = st.builds(
    Naptr,
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from(["s", "S", "a", ""]),
    st.sampled_from(["SIP+D2U", "SIP+D2T", "SIPS+D2T", "E2U+sip", "sip+d2u"]),
    st.just(""),
    st.sampled_from([n for n in NAMES if n.startswith("_")] + ["d.test", "."]),
)
srv = st.builds(
    Srv, st.integers(0, 2), st.integers(0, 5), st.integers(1, 65535), st.sampled_from(HOSTS)
)


def records_for(rdtype: RdType) -> st.SearchStrategy[list[Record]]:
    if rdtype is RdType.NAPTR:
        return st.lists(naptr, min_size=1, max_size=4)  # type: ignore[arg-type]
    if rdtype is RdType.SRV:
        return st.lists(srv, min_size=1, max_size=4)  # type: ignore[arg-type]
    return st.lists(st.sampled_from(ADDRESSES[rdtype]), min_size=1, max_size=2)  # type: ignore[arg-type]


@st.composite
def zones(draw: st.DrawFn) -> dict[Query, Answer]:
    zone: dict[Query, Answer] = {}
    for name in NAMES:
        for rdtype in RdType:
            query = Query(name, rdtype)
            if draw(st.booleans()):
                zone[query] = Answer(query, DnsStatus.OK, tuple(draw(records_for(rdtype))), 60)
            else:
                zone[query] = Answer(query, draw(st.sampled_from(FAILURES)))
    return zone


TARGETS = st.sampled_from(
    [
        SipTarget("d.test"),
        SipTarget("d.test", 5070),
        SipTarget("d.test", None, Transport.UDP),
        SipTarget("d.test", None, Transport.TLS, True),
        SipTarget("h1.d.test", None, Transport.TCP),
    ]
)


@settings(max_examples=150, deadline=None)
@given(zone=zones(), target=TARGETS, order_seed=st.integers(0, 2**16), copies=st.integers(1, 3))
def test_every_resolution_finishes_with_only_the_zones_addresses(
    zone: dict[Query, Answer], target: SipTarget, order_seed: int, copies: int
) -> None:
    resolver = Resolver(rng=random.Random(order_seed))
    shuffle = random.Random(order_seed)
    resolutions = []
    in_flight: list[Query] = []
    for _ in range(copies):
        resolution, step = resolver.resolve(target, 0.0)
        resolutions.append(resolution)
        assert not set(step.queries) & set(in_flight), "a query asked twice while under way"
        in_flight += step.queries
    answered = 0
    while in_flight:
        query = in_flight.pop(shuffle.randrange(len(in_flight)))
        step = resolver.on_answer(zone.get(query) or Answer(query, DnsStatus.NXDOMAIN), 0.0)
        answered += 1
        assert not set(step.queries) & set(in_flight), "a query asked twice while under way"
        in_flight += step.queries
        assert answered <= 4 * len(zone)
    allowed = {Transport.UDP, Transport.TCP} | ({target.transport} - {None})
    for resolution in resolutions:
        assert resolution.result is not None, "a resolution never finished"
        if isinstance(resolution.result, Resolved):
            assert resolution.result.targets
            for dest in resolution.result.targets:
                assert dest.host in ADDRESSES[RdType.A] + ADDRESSES[RdType.AAAA]
                assert dest.transport in allowed
                assert dest.port is not None and 1 <= dest.port <= 65535
        else:
            assert isinstance(resolution.result, DnsFailure)
            assert resolution.result.status is not DnsStatus.OK
