"""The resolver's look-ups on the shard's event loop, through c-ares (aiodns).

`DnsLookup` turns a `Query` into an `Answer` without blocking the loop and
never raises: every DNS outcome, a timeout included, is an answer the resolver
understands. `ResolverDriver` is the glue a shard needs: it starts the look-ups
each resolver step asks for and feeds their answers back, and calls
``on_done(resolution)`` for every resolution that finishes.

c-ares does the network side on its own thread and hands results back to the
loop (``call_soon_threadsafe``); bench/dns_lookups.py measured a third of
dnspython's latency and a fifth of its CPU per look-up on this path
(docs/sip-core.md, "Reaching servers").

A look-up never takes longer than ``[dns] timeout`` times ``attempts``: c-ares
lengthens its timeout on each retry, so the bound is enforced here as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiodns
import pycares

from ..config import DnsSettings, dns_server_address
from ..metrics.shard import ShardMetrics
from .dns_answer import Answer, DnsStatus, Naptr, Query, RdType, Record, Srv
from .resolver import DnsFailure, Resolution, Resolved, Resolver, SipTarget, Step

_STATUS_OF_ERROR = {
    pycares.errno.ARES_ENOTFOUND: DnsStatus.NXDOMAIN,
    pycares.errno.ARES_ENODATA: DnsStatus.NODATA,
    pycares.errno.ARES_ESERVFAIL: DnsStatus.SERVFAIL,
    pycares.errno.ARES_EREFUSED: DnsStatus.REFUSED,
    pycares.errno.ARES_ETIMEOUT: DnsStatus.TIMEOUT,
}
_TYPE_CODE = {
    RdType.NAPTR: pycares.QUERY_TYPE_NAPTR,
    RdType.SRV: pycares.QUERY_TYPE_SRV,
    RdType.A: pycares.QUERY_TYPE_A,
    RdType.AAAA: pycares.QUERY_TYPE_AAAA,
}


def c_ares_servers(servers: tuple[str, ...]) -> list[str]:
    """``[dns] servers`` in the form c-ares takes: ``ip:port``, ``[v6]:port``."""
    out: list[str] = []
    for text in servers:
        parsed = dns_server_address(text)
        if parsed is None:
            raise ValueError(f"not a DNS server address: {text!r}")
        host, port = parsed
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out


class DnsLookup:
    """Performs `Query` look-ups for one shard; create it on the running loop."""

    def __init__(self, settings: DnsSettings, *, metrics: ShardMetrics | None = None) -> None:
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self._channel = aiodns.DNSResolver(
            nameservers=c_ares_servers(settings.servers) or None,
            timeout=settings.timeout,
            tries=settings.attempts,
            # SIP URIs name fully qualified domains: never try the search list.
            flags=pycares.ARES_FLAG_NOSEARCH,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._m = metrics

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the look-ups run on."""
        return self._loop

    async def lookup(self, query: Query) -> Answer:
        """Ask the servers; the answer, or the DNS outcome that stands for one."""
        started = self._loop.time()
        try:
            async with asyncio.timeout(self.settings.timeout * self.settings.attempts):
                result = await self._channel.query_dns(query.name, query.rdtype.value)
        except TimeoutError:
            answer = Answer(query, DnsStatus.TIMEOUT)
        except aiodns.error.DNSError as exc:
            code = exc.args[0] if exc.args else None
            answer = Answer(query, _STATUS_OF_ERROR.get(code, DnsStatus.ERROR))
        else:
            answer = _answer(query, result)
        if self._m is not None:
            self._m.dns_lookups.labels(query.rdtype.value, answer.status.metric_result).inc()
            self._m.dns_lookup_seconds.observe(self._loop.time() - started)
        return answer

    def start(self, query: Query, on_answer: Callable[[Answer], None]) -> None:
        """Look ``query`` up in the background and call ``on_answer`` on the loop."""

        async def run() -> None:
            on_answer(await self.lookup(query))

        task = self._loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        """Look-ups started with `start` and not answered yet."""
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel the look-ups under way and release c-ares' sockets and thread."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channel.close()


class ResolverDriver:
    """Runs one `Resolver`'s look-ups through one `DnsLookup` on the loop."""

    def __init__(
        self,
        resolver: Resolver,
        lookup: DnsLookup,
        clock: Callable[[], float],
        on_done: Callable[[Resolution], None],
    ) -> None:
        self.resolver = resolver
        self.lookup = lookup
        self.clock = clock
        self.on_done = on_done
        self._waiters: dict[Resolution, asyncio.Future[Resolved | DnsFailure]] = {}

    def resolve(self, target: SipTarget, context: object = None) -> Resolution:
        """Start locating ``target``. ``on_done`` is called when it finishes, before
        this returns if it needs no look-up (an IP literal, a cached name)."""
        resolution, step = self.resolver.resolve(target, self.clock(), context)
        self._run(step)
        return resolution

    async def resolve_and_wait(
        self, target: SipTarget, context: object = None
    ) -> Resolved | DnsFailure:
        """`resolve` as a coroutine, for tools and tests; ``on_done`` is called too."""
        resolution = self.resolve(target, context)
        if resolution.result is not None:
            return resolution.result
        waiter: asyncio.Future[Resolved | DnsFailure] = self.lookup.loop.create_future()
        self._waiters[resolution] = waiter
        try:
            return await waiter
        finally:
            self._waiters.pop(resolution, None)

    def _run(self, step: Step) -> None:
        for resolution in step.done:
            waiter = self._waiters.pop(resolution, None)
            if waiter is not None and not waiter.done() and resolution.result is not None:
                waiter.set_result(resolution.result)
            self.on_done(resolution)
        for query in step.queries:
            self.lookup.start(query, self._answered)

    def _answered(self, answer: Answer) -> None:
        self._run(self.resolver.on_answer(answer, self.clock()))


def _answer(query: Query, result: pycares.DNSResult) -> Answer:
    """The records of the type asked for (a CNAME chain's links left out)."""
    code = _TYPE_CODE[query.rdtype]
    records: list[Record] = []
    ttl: float | None = None
    for rr in result.answer:
        if rr.type != code:
            continue
        record = _record(rr.data)
        if record is not None:
            records.append(record)
            ttl = rr.ttl if ttl is None else min(ttl, rr.ttl)
    if not records:
        return Answer(query, DnsStatus.NODATA)
    return Answer(query, DnsStatus.OK, tuple(records), ttl)


def _record(data: object) -> Record | None:
    if isinstance(data, pycares.ARecordData | pycares.AAAARecordData):
        return str(data.addr)
    if isinstance(data, pycares.SRVRecordData):
        return Srv(data.priority, data.weight, data.port, str(data.target))
    if isinstance(data, pycares.NAPTRRecordData):
        return Naptr(
            data.order,
            data.preference,
            _text(data.flags),
            _text(data.service),
            _text(data.regexp),
            _text(data.replacement),
        )
    return None


def _text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value
