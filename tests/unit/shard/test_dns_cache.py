"""The DNS cache: answers live for their TTL, negative ones for the negative TTL,
failures briefly, and the least recently used entry leaves first when it is full."""

from __future__ import annotations

from presence_b2b.shard.dns_answer import Answer, DnsStatus, Query, RdType
from presence_b2b.shard.dns_cache import CacheLimits, DnsCache

Q = Query("presence.test", RdType.A)


def ok(query: Query = Q, ttl: float | None = 60.0) -> Answer:
    return Answer(query, DnsStatus.OK, ("127.0.0.1",), ttl)


def test_a_positive_answer_is_served_until_its_ttl_ends() -> None:
    cache = DnsCache()
    cache.put(ok(ttl=60), now=100.0)
    assert cache.get(Q, 159.9) == ok(ttl=60)
    assert cache.get(Q, 160.0) is None


def test_a_zero_ttl_answer_is_not_kept() -> None:
    cache = DnsCache()
    cache.put(ok(ttl=0), now=100.0)
    assert len(cache) == 0


def test_a_huge_ttl_is_cut_to_the_maximum() -> None:
    cache = DnsCache(CacheLimits(max_ttl=300))
    cache.put(ok(ttl=86400), now=0.0)
    assert cache.get(Q, 299.0) is not None
    assert cache.get(Q, 300.0) is None


def test_nxdomain_is_kept_for_the_soa_negative_ttl_when_given() -> None:
    cache = DnsCache()
    cache.put(Answer(Q, DnsStatus.NXDOMAIN, ttl=10), now=0.0)
    assert cache.get(Q, 9.0) == Answer(Q, DnsStatus.NXDOMAIN, ttl=10)
    assert cache.get(Q, 10.0) is None


def test_nodata_without_a_negative_ttl_is_kept_for_the_default() -> None:
    cache = DnsCache(CacheLimits(negative_ttl=30))
    cache.put(Answer(Q, DnsStatus.NODATA), now=0.0)
    assert cache.get(Q, 29.0) is not None
    assert cache.get(Q, 30.0) is None


def test_a_negative_ttl_is_cut_to_the_negative_maximum() -> None:
    cache = DnsCache(CacheLimits(max_negative_ttl=60))
    cache.put(Answer(Q, DnsStatus.NXDOMAIN, ttl=3600), now=0.0)
    assert cache.get(Q, 60.0) is None


def test_a_timeout_is_kept_only_for_the_failure_ttl() -> None:
    cache = DnsCache(CacheLimits(failure_ttl=5))
    cache.put(Answer(Q, DnsStatus.TIMEOUT), now=0.0)
    assert cache.get(Q, 4.9) == Answer(Q, DnsStatus.TIMEOUT)
    assert cache.get(Q, 5.0) is None


def test_when_full_the_least_recently_used_entry_leaves() -> None:
    cache = DnsCache(CacheLimits(size=2))
    a, b, c = (Query(f"{n}.test", RdType.A) for n in "abc")
    cache.put(ok(a), 0.0)
    cache.put(ok(b), 0.0)
    cache.get(a, 1.0)  # a is now the most recently used
    cache.put(ok(c), 1.0)
    assert cache.get(b, 1.0) is None
    assert cache.get(a, 1.0) is not None
    assert cache.get(c, 1.0) is not None


def test_size_zero_keeps_nothing() -> None:
    cache = DnsCache(CacheLimits(size=0))
    cache.put(ok(), 0.0)
    assert cache.get(Q, 0.0) is None


def test_names_are_cached_case_insensitively_and_without_the_root_dot() -> None:
    cache = DnsCache()
    cache.put(ok(Query("Presence.TEST.", RdType.A)), 0.0)
    assert cache.get(Q, 1.0) is not None
