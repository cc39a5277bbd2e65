"""A TTL-bounded, size-limited cache of DNS answers, negative ones included.

Every shard resolves the same few presence servers' names over and over (each
subscription's refresh re-resolves, RFC 3263 §4.3); the cache makes that free
until the records' TTL ends. Negative answers (NXDOMAIN, NODATA) are kept for
their SOA negative TTL (RFC 2308), so a mistyped domain does not cost one look-up
per subscription; a SERVFAIL or a timeout is kept briefly, so a dead server does
not make every subscription wait its own timeout. The least recently used entry
goes first when the cache is full. Time is always passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .dns_answer import Answer, DnsStatus, Query


@dataclass(frozen=True, slots=True)
class CacheLimits:
    """How long answers are kept, in seconds, and how many."""

    size: int = 10_000  # entries; 0 turns the cache off
    max_ttl: float = 3600.0  # a positive answer is kept at most this long
    negative_ttl: float = 30.0  # NXDOMAIN/NODATA without an SOA negative TTL
    max_negative_ttl: float = 300.0  # RFC 2308 §5 suggests 1-3 hours; we retry sooner
    failure_ttl: float = 5.0  # SERVFAIL, REFUSED, timeout, error (RFC 2308 §7: at most 5 min)


class DnsCache:
    """Answers by query until they expire; ``get`` returns None for a miss."""

    def __init__(self, limits: CacheLimits = CacheLimits()) -> None:
        self.limits = limits
        self._entries: OrderedDict[Query, tuple[float, Answer]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: Query, now: float) -> Answer | None:
        """The cached answer, if it has not expired."""
        entry = self._entries.get(query)
        if entry is None:
            return None
        expires, answer = entry
        if now >= expires:
            del self._entries[query]
            return None
        self._entries.move_to_end(query)
        return answer

    def put(self, answer: Answer, now: float) -> None:
        """Keep ``answer`` for as long as its kind allows; a zero lifetime keeps nothing."""
        lifetime = self.lifetime(answer)
        if lifetime <= 0 or self.limits.size <= 0:
            return
        self._entries[answer.query] = (now + lifetime, answer)
        self._entries.move_to_end(answer.query)
        while len(self._entries) > self.limits.size:
            self._entries.popitem(last=False)

    def lifetime(self, answer: Answer) -> float:
        """Seconds ``answer`` may be served from the cache."""
        limits = self.limits
        if answer.status is DnsStatus.OK:
            return min(answer.ttl or 0.0, limits.max_ttl)
        if answer.status.negative:
            ttl = limits.negative_ttl if answer.ttl is None else answer.ttl
            return min(ttl, limits.max_negative_ttl)
        return limits.failure_ttl
