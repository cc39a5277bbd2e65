"""Prometheus metrics: a static catalogue, per-process shared-memory counters, one endpoint.

Shards count into blocks the supervisor allocated before forking them
(:class:`ShardMetrics` over :class:`MetricsBlock`); the supervisor's
:class:`PresenceCollector` reads every block at scrape time and
:class:`MetricsServer` serves the result. See docs/metrics.md.
"""

from .block import BlockError, MetricsBlock
from .catalog import CATALOG, PREFIX, SHARD_LABEL, SUPERVISOR, Family, Label
from .collector import MetricsBlocks, PresenceCollector, make_registry
from .http import MetricsServer, parse_listen
from .shard import Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramVec, ShardMetrics

__all__ = [
    "CATALOG",
    "PREFIX",
    "SHARD_LABEL",
    "SUPERVISOR",
    "BlockError",
    "Counter",
    "CounterVec",
    "Family",
    "Gauge",
    "GaugeVec",
    "Histogram",
    "HistogramVec",
    "Label",
    "MetricsBlock",
    "MetricsBlocks",
    "MetricsServer",
    "PresenceCollector",
    "ShardMetrics",
    "make_registry",
    "parse_listen",
]
