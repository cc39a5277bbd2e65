"""Supervisor side: the blocks of every process and the scrape-time collector.

The supervisor allocates all blocks before it forks the first shard and keeps
them for its whole life; a respawned shard inherits the same block as its
predecessor. At scrape time the collector copies each block's slots, adds the
``shard`` label, and asks psutil for each live process's CPU time, resident
memory and open descriptors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

import psutil  # type: ignore[import-untyped, unused-ignore]
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .block import MetricsBlock
from .catalog import CATALOG, SHARD_LABEL, SUPERVISOR, Family
from .shard import DirectCounter, DirectGauge, ShardMetrics

__all__ = ["MetricsBlocks", "PresenceCollector", "make_registry"]

log = logging.getLogger(__name__)

#: shard label value -> pid of the process running now (absent when it is down).
PidsFn = Callable[[], Mapping[str, int]]


class MetricsBlocks:
    """One block per shard plus the supervisor's; create before the first fork."""

    def __init__(self, shard_count: int) -> None:
        if shard_count < 1:
            raise ValueError("shard_count must be >= 1")
        self.shards: tuple[MetricsBlock, ...] = tuple(
            MetricsBlock.create(str(i)) for i in range(shard_count)
        )
        self.supervisor = MetricsBlock.create(SUPERVISOR)
        # The supervisor's only writes into shard blocks: straight through, never
        # buffered, so nothing here can overwrite what a shard flushed.
        self._restarts = tuple(
            DirectCounter(b.view, b.layout.base["shard_restarts_total"]) for b in self.shards
        )
        self._up = tuple(DirectGauge(b.view, b.layout.base["shard_up"]) for b in self.shards)
        self._start_failures = tuple(
            DirectCounter(b.view, b.layout.base["shard_start_failures_total"])
            for b in self.shards
        )
        #: The supervisor's own counters (QSA clients, requests, its rings, errors);
        #: flushed by the collector before every scrape.
        self.supervisor_metrics = ShardMetrics(self.supervisor)

    def __iter__(self) -> Iterator[MetricsBlock]:
        yield from self.shards
        yield self.supervisor

    def shard(self, index: int) -> MetricsBlock:
        """The block shard ``index`` counts into; call ``ShardMetrics(block)`` after fork."""
        return self.shards[index]

    def shard_started(self, index: int, *, restart: bool) -> None:
        """Record a (re)started shard: restarts counts every fork after the first."""
        if restart:
            self._restarts[index].inc()
        self._up[index].set(1.0)

    def shard_start_failed(self, index: int) -> None:
        """The supervisor tried to start shard ``index`` and could not."""
        self._start_failures[index].inc()

    def shard_exited(self, index: int) -> None:
        """The shard is gone: its gauges describe nothing any more, so zero them."""
        self.shards[index].reset_gauges()
        self._up[index].set(0.0)

    def close(self) -> None:
        for b in self:
            b.close()


_AnyFamily = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


def _family_for(f: Family, suffix_free: str) -> _AnyFamily:
    labels = [*f.label_names, SHARD_LABEL]
    if f.type == "counter":
        return CounterMetricFamily(suffix_free, f.help, labels=labels)
    if f.type == "gauge":
        return GaugeMetricFamily(suffix_free, f.help, labels=labels)
    return HistogramMetricFamily(suffix_free, f.help, labels=labels)


def _le(bound: float) -> str:
    return repr(float(bound))


class PresenceCollector(Collector):
    """Reads every process's block and psutil figures; register on a CollectorRegistry."""

    def __init__(
        self,
        blocks: Iterable[MetricsBlock],
        pids: PidsFn,
        before_collect: Callable[[], None] | None = None,
    ) -> None:
        self._blocks = tuple(blocks)
        self._pids = pids
        self._before = before_collect
        self._procs: dict[int, psutil.Process] = {}

    def describe(self) -> Iterable[Metric]:
        """Families without samples, so registering does not run a whole collection."""
        return [_family_for(f, f.full_name) for f in CATALOG]

    def collect(self) -> Iterable[Metric]:
        if self._before is not None:
            self._before()
        snapshots = {b.label: (b, b.snapshot()) for b in self._blocks}
        process = self._process_figures()
        out: list[Metric] = []
        for f in CATALOG:
            family = _family_for(f, f.full_name)
            if f.source == "process":
                assert not isinstance(family, HistogramMetricFamily)
                for label, figures in process.items():
                    if f.name in figures:
                        family.add_metric([label], figures[f.name])
                out.append(family)
                continue
            for label, (block, slots) in snapshots.items():
                if not f.reported_by(label):
                    continue
                base = block.layout.base[f.name]
                width = f.slots_per_series
                for n, values in enumerate(f.series()):
                    at = base + n * width
                    lv = [*values, label]
                    if isinstance(family, HistogramMetricFamily):
                        buckets: list[tuple[str, float]] = []
                        running = 0.0
                        for k, bound in enumerate(f.buckets):
                            running += slots[at + k]
                            buckets.append((_le(bound), running))
                        running += slots[at + len(f.buckets)]
                        buckets.append(("+Inf", running))
                        family.add_metric(lv, buckets, slots[at + width - 1])
                    else:
                        family.add_metric(lv, slots[at])
            out.append(family)
        return out

    def _process_figures(self) -> dict[str, dict[str, float]]:
        """CPU seconds, RSS and fds per live process; a vanished pid is just skipped."""
        figures: dict[str, dict[str, float]] = {}
        live: dict[int, psutil.Process] = {}
        for label, pid in self._pids().items():
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = psutil.Process(pid)
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    rss = proc.memory_info().rss
                    fds = proc.num_fds()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except psutil.AccessDenied as exc:
                log.debug("process figures of %s (pid %d): %s", label, pid, exc)
                continue
            live[pid] = proc
            figures[label] = {
                "process_cpu_seconds_total": cpu.user + cpu.system,
                "process_resident_memory_bytes": float(rss),
                "process_open_fds": float(fds),
            }
        self._procs = live
        return figures


def make_registry(blocks: MetricsBlocks, pids: PidsFn) -> CollectorRegistry:
    """A registry holding only this service's families (no default process_* ones).

    The supervisor's own buffered counters are flushed before every scrape, so
    its figures are exact; shards' are at most one flush interval old.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PresenceCollector(blocks, pids, blocks.supervisor_metrics.flush))
    return registry
