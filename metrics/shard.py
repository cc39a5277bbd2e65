"""The hot-path counting API each process uses on its own metrics block.

Bind once, count many times: ``labels()`` validates the values against the
catalogue and returns a child; the child's ``inc()``, ``set()`` or
``observe()`` is one attribute lookup and one call::

    m = ShardMetrics(block)                                  # after fork
    notify_active = m.sip_notify_received.labels("active")   # at start-up
    notify_active.inc()                                      # per NOTIFY
    m.start_flushing(loop)                                   # every 0.5 s to the block

Families without labels are children already: ``m.dialogs.set(n)``,
``m.sip_transaction_timeouts.inc()``.

A child counts in a plain Python number on a slotted object, and
:meth:`ShardMetrics.flush` copies every series into the shared block (a few
microseconds for the whole catalogue). That makes an update cost what a bare
Python method call costs, about a third of a read-modify-write through a
``memoryview`` (bench/metrics.py, docs/metrics.md). The price: the block is up to
one flush interval behind, and a process that dies without flushing loses at
most that interval's counts. Counters stay monotonic across restarts because
children start from the values in the block.

No lock anywhere: each event loop is single-threaded, each slot has a single
writer, and flush runs on the same loop as the increments.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .block import FloatSlots, MetricsBlock
from .catalog import BY_NAME, CATALOG, Family

__all__ = [
    "Counter",
    "CounterVec",
    "DirectCounter",
    "DirectGauge",
    "Gauge",
    "GaugeVec",
    "Histogram",
    "HistogramVec",
    "ShardMetrics",
]

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5


class Counter:
    """One counter series: only ever goes up, also across shard restarts."""

    __slots__ = ("value",)

    def __init__(self, start: float = 0.0) -> None:
        self.value = start

    def inc(self) -> None:
        """Count one; the hot path, so no argument and no check."""
        self.value += 1

    def add(self, amount: float) -> None:
        """Count ``amount`` at once (a batch, bytes)."""
        if amount < 0:
            raise ValueError("a counter cannot go down")
        self.value += amount


class Gauge:
    """One gauge series: a level the process sets or moves."""

    __slots__ = ("value",)

    def __init__(self, start: float = 0.0) -> None:
        self.value = start

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def set_max(self, value: float) -> None:
        """Raise to ``value`` if higher: for high-water marks."""
        self.value = max(self.value, value)


class Histogram:
    """One histogram series: a count per bucket (+Inf last) and the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...], start: list[float] | None = None) -> None:
        self._bounds = bounds
        self.counts: list[float] = start[:-1] if start else [0.0] * (len(bounds) + 1)
        self.sum: float = start[-1] if start else 0.0

    def observe(self, value: float) -> None:
        """Bucket ``value`` (upper bound inclusive, as Prometheus' ``le``) and add it up."""
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> float:
        return sum(self.counts)


class DirectCounter:
    """Writes through to the block at once: for slots a *different* process owns.

    The supervisor counts a shard's restarts in the shard's block; a buffered
    copy there would be overwritten by nobody, but one in the shard would
    overwrite the supervisor's count at the next flush, so neither buffers.
    """

    __slots__ = ("_i", "_v")

    def __init__(self, view: FloatSlots, slot: int) -> None:
        self._v = view
        self._i = slot

    def inc(self) -> None:
        self._v[self._i] += 1.0

    @property
    def value(self) -> float:
        return float(self._v[self._i])


class DirectGauge:
    """A gauge written straight into the block (see :class:`DirectCounter`)."""

    __slots__ = ("_i", "_v")

    def __init__(self, view: FloatSlots, slot: int) -> None:
        self._v = view
        self._i = slot

    def set(self, value: float) -> None:
        self._v[self._i] = value

    @property
    def value(self) -> float:
        return float(self._v[self._i])


C = TypeVar("C", bound=Counter | Gauge | Histogram)


class _Vec(Generic[C]):
    """A labelled family; every child exists up front, ``labels()`` only looks it up."""

    __slots__ = ("_children", "_family")
    _children: dict[tuple[str, ...], C]

    def __init__(self, family: Family, children: dict[tuple[str, ...], C]) -> None:
        self._family = family
        self._children = children

    @property
    def family(self) -> Family:
        return self._family

    def labels(self, *values: str, **by_name: str) -> C:
        """The child for these label values, positional or by name (``class`` needs positional).

        ValueError names the label when a value is not in the catalogue, when a
        name is unknown, or when one is missing.
        """
        f = self._family
        if by_name:
            if values:
                raise ValueError(f"{f.full_name}: give label values by position or by name")
            unknown = sorted(set(by_name) - set(f.label_names))
            if unknown:
                raise ValueError(
                    f"{f.full_name}: unknown label {unknown[0]!r}"
                    f" (labels: {', '.join(f.label_names)})"
                )
            missing = [n for n in f.label_names if n not in by_name]
            if missing:
                raise ValueError(f"{f.full_name}: missing label {missing[0]!r}")
            values = tuple(by_name[n] for n in f.label_names)
        child = self._children.get(values)
        if child is None:
            if len(values) != len(f.labels):
                raise ValueError(
                    f"{f.full_name}: expected {len(f.labels)} label value(s)"
                    f" for ({', '.join(f.label_names)}), got {len(values)}"
                )
            for lb, value in zip(f.labels, values, strict=True):
                try:
                    lb.index(value)
                except ValueError as exc:
                    raise ValueError(f"{f.full_name}: {exc}") from None
            raise AssertionError("unreachable: every allowed series is pre-bound")
        return child


class CounterVec(_Vec[Counter]):
    __slots__ = ()


class GaugeVec(_Vec[Gauge]):
    __slots__ = ()


class HistogramVec(_Vec[Histogram]):
    __slots__ = ()


_RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")


class ShardMetrics:
    """Every block-backed family of the catalogue, as typed attributes.

    Shards and the supervisor use the same class over their own block; the
    collector shows each family only for the processes whose scope names them.
    Attribute names are the family names without the ``_total`` suffix.
    """

    # timers
    timers_armed: CounterVec
    timers_fired: CounterVec
    timer_lag_seconds: Histogram
    gc_pause_seconds: HistogramVec
    # SIP
    sip_requests_sent: CounterVec
    sip_responses_received: CounterVec
    sip_responses_received_by_code: CounterVec
    sip_transaction_timeouts: Counter
    sip_retransmissions: CounterVec
    sip_notify_received: CounterVec
    sip_notify_by_package: CounterVec
    list_refreshes: Counter
    sip_responses_sent: CounterVec
    sip_parse_errors: CounterVec
    # TCP/TLS connections
    sip_connections: GaugeVec
    sip_connections_opened: CounterVec
    sip_connections_failed: CounterVec
    sip_tls_handshake_failures: CounterVec
    # subscriptions
    subscriptions: GaugeVec
    subscriptions_established: Counter
    subscriptions_failed: CounterVec
    subscriptions_terminated: CounterVec
    dialogs: Gauge
    dialogs_resting: Gauge
    dialogs_by_call_id: Gauge
    subscribers: Gauge
    notify_to_client_seconds: Histogram
    # digest authentication
    auth_challenges: CounterVec
    auth_stale_nonces: Counter
    auth_nonce_reuses: Counter
    auth_failures: CounterVec
    # DNS
    dns_lookups: CounterVec
    dns_lookup_seconds: Histogram
    dns_cache_lookups: CounterVec
    # errors
    errors: CounterVec
    # QSA
    qsa_clients: Gauge
    qsa_connections_refused: Counter
    qsa_requests: CounterVec
    qsa_request_pauses: Counter
    qsa_status_sent: Counter
    qsa_ring_depth_bytes: GaugeVec
    qsa_ring_high_water_bytes: GaugeVec
    qsa_status_merges: Counter
    sip_subscribe_pace: Gauge
    # dialog store
    store_rows_written: CounterVec
    store_batch_seconds: Histogram
    store_errors: CounterVec
    store_dialogs: CounterVec
    store_partitions_held: Gauge
    store_partitions_lost: Counter
    # written by the supervisor into each shard's block, straight through
    shard_restarts: DirectCounter
    shard_up: DirectGauge
    shard_start_failures: DirectCounter

    def __init__(self, block: MetricsBlock) -> None:
        block.claim()
        self.block = block
        view = block.view
        start = block.snapshot()
        self._scalars: list[tuple[int, Counter | Gauge]] = []
        self._histograms: list[tuple[int, Histogram]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._samplers: list[Callable[[], None]] = []
        for f in CATALOG:
            if f.source != "block":
                continue
            base = block.layout.base[f.name]
            if f.supervisor_owned:
                direct = DirectCounter if f.type == "counter" else DirectGauge
                setattr(self, f.attr, direct(view, base))
                continue
            width = f.slots_per_series
            children: dict[tuple[str, ...], Any] = {}
            for n, values in enumerate(f.series()):
                slot = base + n * width
                child: Counter | Gauge | Histogram
                if f.type == "histogram":
                    child = Histogram(f.buckets, start[slot : slot + width])
                    self._histograms.append((slot, child))
                else:
                    child = Counter(start[slot]) if f.type == "counter" else Gauge(start[slot])
                    self._scalars.append((slot, child))
                children[values] = child
            if not f.labels:
                setattr(self, f.attr, children[()])
            else:
                vec = {"counter": CounterVec, "gauge": GaugeVec, "histogram": HistogramVec}
                setattr(self, f.attr, vec[f.type](f, children))
        self._received = self._response_table()
        sent = self.sip_responses_sent
        sent_other = sent.labels("other")
        self._sent: dict[int, Counter] = {
            code: sent.labels(str(code)) if str(code) in _SENT_CODES else sent_other
            for code in range(100, 700)
        }

    def _response_table(self) -> dict[int, tuple[Counter, Counter]]:
        by_class = self.sip_responses_received
        by_code = self.sip_responses_received_by_code
        other = by_code.labels("other")
        return {
            code: (
                by_class.labels(_RESPONSE_CLASSES[code // 100 - 1]),
                by_code.labels(str(code)) if str(code) in _RECEIVED_CODES else other,
            )
            for code in range(100, 700)
        }

    def response_received(self, code: int) -> None:
        """Count a SIP response by class and by code (uncommon codes as 'other')."""
        pair = self._received.get(code)
        if pair is not None:
            pair[0].value += 1
            pair[1].value += 1

    def response_sent(self, code: int) -> None:
        """Count a SIP response we sent (uncommon codes as 'other')."""
        child = self._sent.get(code)
        if child is not None:
            child.value += 1

    def flush(self) -> None:
        """Copy every series into the shared block; call on the loop that counts."""
        view = self.block.view
        for slot, c in self._scalars:
            view[slot] = c.value
        for slot, h in self._histograms:
            for k, n in enumerate(h.counts):
                view[slot + k] = n
            view[slot + len(h.counts)] = h.sum

    def add_sampler(self, sample: Callable[[], None]) -> None:
        """Run ``sample()`` on the loop before every timed flush (see start_flushing).

        For levels that are cheaper to look at twice a second than to follow on
        every event, such as the bytes waiting in rings. A sampler that raises
        is logged and the flush goes on.
        """
        self._samplers.append(sample)

    def _sample(self) -> None:
        for sample in self._samplers:
            try:
                sample()
            except Exception:
                log.exception("metrics sampler %r failed", sample)

    def start_flushing(
        self, loop: asyncio.AbstractEventLoop, interval: float = FLUSH_INTERVAL
    ) -> Callable[[], None]:
        """Sample and flush every ``interval`` seconds on ``loop``; stop() flushes once more."""

        def tick() -> None:
            # Re-arm first: a bad value set by a caller must not stop the flushing.
            self._handle = loop.call_later(interval, tick)
            self._sample()
            self.flush()

        self._handle = loop.call_later(interval, tick)

        def stop() -> None:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self.flush()

        return stop


_RECEIVED_CODES = frozenset(BY_NAME["sip_responses_received_by_code_total"].labels[0].values)
_SENT_CODES = frozenset(BY_NAME["sip_responses_sent_total"].labels[0].values)
