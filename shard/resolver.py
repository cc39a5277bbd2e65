"""RFC 3263 server location, sans-I/O: from a SIP URI to an ordered target list.

The resolver never touches the network. It says which look-ups it needs
(`Step.queries`), is given their answers (`on_answer`), and finishes each
`Resolution` with either the targets to try in order, each a `Destination` with
an IP address and a port, or a `DnsFailure` naming the name and what the DNS
said. Driving it::

    res, step = resolver.resolve(SipTarget.from_uri(uri), now, context=sub)
    # start every step.queries look-up; hand each answer back when it comes:
    step = resolver.on_answer(answer, now)
    for done in step.done:            # Resolutions, finished in this step
        done.context, done.result     # Resolved(targets) or DnsFailure

The procedure (RFC 3263 §4): an IP address or an explicit port skips NAPTR
and SRV; a given transport (``;transport=``, or TLS for ``sips:``) skips NAPTR;
otherwise NAPTR picks among the transports we support, falling back to SRV for
each of them, and then to the name's own addresses on the transport's default
port. SRV targets are ordered by priority and weight (RFC 2782). Look-ups
shared by several resolutions are asked once; answers are cached by TTL.

A step whose look-ups time out without giving anything usable ends the
resolution at once: a server that did not answer the NAPTR query will not
answer the next ones, and one timeout is all a subscription should wait. Other
errors at the NAPTR and SRV steps read as "no records" and the procedure goes
on; a look-up asked together with others that did answer is not needed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config import DnsSettings
from ..metrics.shard import ShardMetrics
from .destination import Destination, Transport, address_family, normalise_name, uri_target
from .dns_answer import Answer, DnsStatus, Naptr, Query, RdType, Srv
from .dns_cache import CacheLimits, DnsCache
from .failover import FailedTargets, Failover
from .srv_order import order_srv

#: NAPTR services of RFC 3263 §4.1 and the transport each names.
NAPTR_SERVICES = {
    "sip+d2u": Transport.UDP,
    "sip+d2t": Transport.TCP,
    "sips+d2t": Transport.TLS,
}
#: SRV service labels of RFC 3263 §4.1.
SRV_PREFIX = {
    Transport.UDP: "_sip._udp.",
    Transport.TCP: "_sip._tcp.",
    Transport.TLS: "_sips._tcp.",
}
DEFAULT_PORT = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}

# Which failure to report when several look-ups failed: an error of the DNS
# itself says more than "no such name", which says more than "no such record".
_FAILURE_RANK = {
    DnsStatus.TIMEOUT: 0,
    DnsStatus.SERVFAIL: 1,
    DnsStatus.REFUSED: 2,
    DnsStatus.ERROR: 3,
    DnsStatus.NXDOMAIN: 4,
    DnsStatus.NODATA: 5,
}


@dataclass(frozen=True, slots=True)
class SipTarget:
    """What to locate: a SIP URI's host, port, transport and scheme.

    ``transport`` None lets NAPTR choose; ``secure`` (a ``sips:`` URI) allows TLS only.
    """

    host: str
    port: int | None = None
    transport: Transport | None = None
    secure: bool = False

    @classmethod
    def from_uri(cls, uri: str) -> SipTarget:
        """From a ``sip:``/``sips:`` URI (:func:`.destination.uri_target`).
        Raises SipParseError for a URI that is not SIP."""
        host, port, transport, secure = uri_target(uri)
        return cls(host, port, transport, secure)

    @classmethod
    def from_destination(cls, destination: Destination) -> SipTarget:
        """From a `Destination`: its transport is fixed, as if ``;transport=`` named it."""
        return cls(
            normalise_name(destination.host.strip("[]")),
            destination.port,
            destination.transport,
            destination.transport is Transport.TLS,
        )

    @property
    def is_literal(self) -> bool:
        """The host is an IP address: nothing to look up."""
        return address_family(self.host) != 0


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where to send, in order; each target's host is an IP address."""

    targets: tuple[Destination, ...]


@dataclass(frozen=True, slots=True)
class DnsFailure:
    """The name did not resolve: which look-up failed and how (a ``dns`` failure)."""

    name: str
    rdtype: RdType
    status: DnsStatus

    @property
    def detail(self) -> str:
        """Text for the consumer's Failure.detail, e.g. ``presence.test: nxdomain (A)``."""
        return f"{self.name}: {self.status} ({self.rdtype})"


@dataclass(frozen=True, slots=True)
class ResolverPolicy:
    """What we can reach and how long we remember."""

    #: Transports we have: NAPTR and SRV choices outside this set are ignored.
    #: Without NAPTR, SRV is tried in the order UDP, TCP, TLS.
    transports: frozenset[Transport] = frozenset({Transport.UDP, Transport.TCP})
    #: Address records to ask for, in order of preference: (A,) for IPv4 only.
    address_types: tuple[RdType, ...] = (RdType.AAAA, RdType.A)
    cache: CacheLimits = field(default_factory=CacheLimits)
    #: Seconds a failed target is skipped when no Retry-After said otherwise.
    failed_hold: float = 30.0

    @classmethod
    def from_settings(cls, dns: DnsSettings, **overrides: Any) -> ResolverPolicy:
        """The policy for ``[dns]``: its ``cache_size``; other fields as given."""
        return cls(cache=CacheLimits(size=dns.cache_size), **overrides)


class Resolution:
    """One target being located; ``result`` is set once it is done."""

    __slots__ = ("_answers", "_hops", "_services", "context", "result", "target")

    def __init__(self, target: SipTarget, context: object) -> None:
        self.target = target
        self.context = context
        self.result: Resolved | DnsFailure | None = None
        self._answers: dict[Query, Answer] = {}
        self._services: list[tuple[str, Transport]] | None = None
        self._hops: list[tuple[str, int, Transport]] | None = None

    def __repr__(self) -> str:
        return f"<Resolution {self.target} {self.result}>"


@dataclass(slots=True)
class Step:
    """What an input asks of the driver: look-ups to start, resolutions finished."""

    queries: list[Query] = field(default_factory=list)
    done: list[Resolution] = field(default_factory=list)


class Resolver:
    """All of one shard's resolutions, one cache, one record of failed targets."""

    def __init__(
        self,
        policy: ResolverPolicy = ResolverPolicy(),
        *,
        rng: random.Random | None = None,
        metrics: ShardMetrics | None = None,
    ) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.cache = DnsCache(policy.cache)
        self.failed = FailedTargets(policy.failed_hold)
        self._waiting: dict[Query, dict[Resolution, None]] = {}
        self._m = None if metrics is None else _CacheCounters(metrics)

    # ------------------------------------------------------------------ inputs

    def resolve(
        self, target: SipTarget, now: float, context: object = None
    ) -> tuple[Resolution, Step]:
        """Start locating ``target``; it may be done at once (literal, cached)."""
        resolution = Resolution(target, context)
        step = Step()
        self._advance(resolution, now, step)
        return resolution, step

    def on_answer(self, answer: Answer, now: float) -> Step:
        """The answer to a query asked for; unasked answers only fill the cache."""
        self.cache.put(answer, now)
        step = Step()
        for resolution in self._waiting.pop(answer.query, {}):
            if resolution.result is None:
                resolution._answers[answer.query] = answer
                self._advance(resolution, now, step)
        return step

    def cancel(self, resolution: Resolution) -> None:
        """Forget ``resolution``: its look-ups still fill the cache."""
        for waiting in self._waiting.values():
            waiting.pop(resolution, None)

    def failover(self, resolved: Resolved, now: float) -> Failover:
        """A walk down ``resolved``'s targets for one request, skipping held ones."""
        return Failover(resolved.targets, self.failed, now)

    def mark_failed(
        self, target: Destination, now: float, retry_after: float | None = None
    ) -> None:
        """``target`` timed out, was unreachable or answered 503: skip it for
        ``retry_after`` seconds, or the policy's hold."""
        self.failed.mark(target, now, retry_after)

    @property
    def pending(self) -> int:
        """Look-ups asked for and not answered yet."""
        return len(self._waiting)

    # --------------------------------------------------------------- procedure

    def _advance(self, resolution: Resolution, now: float, step: Step) -> None:
        """Move ``resolution`` on as far as its answers allow, asking for the rest."""
        outcome = self._evaluate(resolution, now)
        if isinstance(outcome, Resolved | DnsFailure):
            resolution.result = outcome
            step.done.append(resolution)
            return
        for query in outcome:
            waiting = self._waiting.get(query)
            if waiting is None:
                self._waiting[query] = {resolution: None}
                step.queries.append(query)
            elif resolution not in waiting:
                waiting[resolution] = None
                if self._m is not None:
                    self._m.joined.inc()

    def _evaluate(self, res: Resolution, now: float) -> list[Query] | Resolved | DnsFailure:
        """The procedure from the top with the answers at hand: the look-ups
        still needed, or the outcome."""
        target = res.target
        if target.is_literal:
            transport = target.transport or self._fallback_transport(target)
            port = target.port or DEFAULT_PORT[transport]
            return Resolved((Destination(transport, target.host, port),))
        if res._hops is None:
            if target.port is not None:
                transport = target.transport or self._fallback_transport(target)
                res._hops = [(target.host, target.port, transport)]
            else:
                pending = self._service_hops(res, now)
                if pending is not None:
                    return pending
        return self._addresses(res, now)

    def _service_hops(self, res: Resolution, now: float) -> list[Query] | DnsFailure | None:
        """NAPTR, then SRV: sets the (name, port, transport) hops to look up
        addresses for, or says what is still needed, or why there are none."""
        target = res.target
        if res._services is None:
            if target.transport is not None:
                res._services = [(SRV_PREFIX[target.transport] + target.host, target.transport)]
            else:
                naptr = self._known(res, Query(target.host, RdType.NAPTR), now)
                if naptr is None:
                    return [Query(target.host, RdType.NAPTR)]
                if naptr.status is DnsStatus.TIMEOUT:
                    return DnsFailure(target.host, RdType.NAPTR, naptr.status)
                res._services = self._naptr_services(naptr) or [
                    (SRV_PREFIX[t] + target.host, t) for t in self._srv_transports(target)
                ]
        queries = [Query(name, RdType.SRV) for name, _ in res._services]
        answers = [self._known(res, q, now) for q in queries]
        missing = [q for q, a in zip(queries, answers, strict=True) if a is None]
        if missing:
            return missing
        hops: list[tuple[str, int, Transport]] = []
        found_srv = False
        timed_out: str | None = None
        for (name, transport), answer in zip(res._services, answers, strict=True):
            assert answer is not None
            if answer.status is DnsStatus.TIMEOUT:
                timed_out = timed_out or name
            if answer.status is not DnsStatus.OK:
                continue
            found_srv = True
            records = [r for r in answer.records if isinstance(r, Srv)]
            for srv in order_srv(records, self.rng):
                if srv.target not in (".", ""):
                    hops.append((normalise_name(srv.target), srv.port, transport))
        if not hops and timed_out is not None:  # asked together; none usable, one silent
            return DnsFailure(timed_out, RdType.SRV, DnsStatus.TIMEOUT)
        if not hops and found_srv:  # only "." targets: decidedly not offered (RFC 2782)
            return DnsFailure(res._services[0][0], RdType.SRV, DnsStatus.NODATA)
        if not hops:
            transport = target.transport or self._fallback_transport(target)
            hops = [(target.host, DEFAULT_PORT[transport], transport)]
        res._hops = hops
        return None

    def _addresses(self, res: Resolution, now: float) -> list[Query] | Resolved | DnsFailure:
        """A/AAAA for every hop: the targets in hop order, or the best failure."""
        assert res._hops is not None
        names = list(dict.fromkeys(name for name, _, _ in res._hops))
        queries = [Query(n, t) for n in names if not _is_ip(n) for t in self.policy.address_types]
        answers = {q: self._known(res, q, now) for q in queries}
        missing = [q for q, a in answers.items() if a is None]
        if missing:
            return missing
        targets: list[Destination] = []
        for name, port, transport in res._hops:
            if _is_ip(name):
                addresses: Iterable[str] = [name]
            else:
                addresses = (
                    r
                    for t in self.policy.address_types
                    for r in _records(answers[Query(name, t)])
                    if isinstance(r, str)
                )
            for address in addresses:
                dest = Destination(transport, address, port)
                if dest not in targets:
                    targets.append(dest)
        if targets:
            return Resolved(tuple(targets))
        failed = [a for a in answers.values() if a is not None]
        worst = min(failed, key=lambda a: _FAILURE_RANK.get(a.status, 9))
        return DnsFailure(worst.query.name, worst.query.rdtype, worst.status)

    # ----------------------------------------------------------------- helpers

    def _known(self, res: Resolution, query: Query, now: float) -> Answer | None:
        """The answer this resolution has for ``query``, from itself or the cache."""
        answer = res._answers.get(query)
        if answer is not None:
            return answer
        answer = self.cache.get(query, now)
        if self._m is not None:
            if answer is None:
                if query not in self._waiting:
                    self._m.miss.inc()
            else:
                self._m.hit(answer.status)
        if answer is not None:
            res._answers[query] = answer
        return answer

    def _naptr_services(self, answer: Answer) -> list[tuple[str, Transport]]:
        """Usable NAPTR records in order: SIP services we support, "s" flag."""
        usable = sorted(
            (r for r in answer.records if isinstance(r, Naptr)),
            key=lambda r: (r.order, r.preference),
        )
        services: list[tuple[str, Transport]] = []
        for record in usable:
            transport = NAPTR_SERVICES.get(record.service.lower())
            if (
                transport is None
                or transport not in self.policy.transports
                or record.flags.lower() != "s"
                or not record.replacement.strip(".")
            ):
                continue
            service = (normalise_name(record.replacement), transport)
            if service not in services:
                services.append(service)
        return services

    def _srv_transports(self, target: SipTarget) -> list[Transport]:
        """Without NAPTR: SRV for each transport we support (TLS only for ``sips:``)."""
        allowed = [Transport.TLS] if target.secure else list(Transport)
        return [t for t in allowed if t in self.policy.transports]

    def _fallback_transport(self, target: SipTarget) -> Transport:
        """RFC 3263 §4.1: UDP for ``sip:``, TLS for ``sips:``; else the first we have."""
        if target.secure:
            return Transport.TLS
        if Transport.UDP in self.policy.transports:
            return Transport.UDP
        return next(t for t in Transport if t in self.policy.transports)


class _CacheCounters:
    """The ``dns_cache_lookups_total`` children, bound once."""

    __slots__ = ("joined", "miss", "negative", "positive")

    def __init__(self, m: ShardMetrics) -> None:
        family = m.dns_cache_lookups
        self.positive = family.labels("hit")
        self.negative = family.labels("negative-hit")
        self.miss = family.labels("miss")
        self.joined = family.labels("joined")

    def hit(self, status: DnsStatus) -> None:
        (self.positive if status is DnsStatus.OK else self.negative).inc()


def _records(answer: Answer | None) -> tuple[object, ...]:
    return () if answer is None else answer.records


def _is_ip(host: str) -> bool:
    return address_family(host) != 0
