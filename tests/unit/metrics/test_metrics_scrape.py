"""The scrape: parses, has consistent histograms, per-process figures, and lints clean."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from metrics_helpers import Scrape, samples, value
from presence_b2b.metrics import CATALOG, MetricsBlocks, ShardMetrics, make_registry
from presence_b2b.metrics.catalog import sample_names
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families


def busy(blocks: MetricsBlocks) -> ShardMetrics:
    m = ShardMetrics(blocks.shard(0))
    for lag in (0.0004, 0.003, 0.003, 0.07, 0.9, 42.0):
        m.timer_lag_seconds.observe(lag)
    m.notify_to_client_seconds.observe(0.0002)
    m.sip_requests_sent.labels("SUBSCRIBE", "initial").inc()
    m.errors.labels("pidf").add(3)
    m.qsa_ring_high_water_bytes.labels("status").set_max(4096)
    m.flush()
    s = blocks.supervisor_metrics
    s.qsa_clients.set(2)
    s.qsa_connections_refused.inc()
    return m


def test_scrape_parses_with_the_prometheus_text_parser(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    busy(blocks)
    families = {f.name: f for f in text_string_to_metric_families(scrape())}
    for f in CATALOG:
        parsed = families[f.full_name.removesuffix("_total")]
        assert parsed.type == f.type
        assert parsed.documentation == f.help
    assert {s.name for f in families.values() for s in f.samples} <= sample_names()


def test_histogram_buckets_are_cumulative_and_count_and_sum_agree(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    busy(blocks)
    text = scrape()
    family = next(
        f for f in text_string_to_metric_families(text)
        if f.name == "presence_b2b_timer_lag_seconds"
    )
    buckets = [
        (float(s.labels["le"]), s.value)
        for s in family.samples
        if s.name.endswith("_bucket") and s.labels["shard"] == "0"
    ]
    assert [b for b, _ in buckets] == sorted(b for b, _ in buckets)
    counts = [c for _, c in buckets]
    assert counts == sorted(counts)
    assert buckets[-1] == (float("inf"), 6)
    assert dict(buckets)[0.001] == 1 and dict(buckets)[0.005] == 3 and dict(buckets)[1.0] == 5
    count = value(text, "presence_b2b_timer_lag_seconds_count", shard="0")
    total = value(text, "presence_b2b_timer_lag_seconds_sum", shard="0")
    assert count == buckets[-1][1]
    assert total == pytest.approx(0.0004 + 0.003 + 0.003 + 0.07 + 0.9 + 42.0)


def test_an_observation_on_a_bucket_bound_counts_in_that_bucket(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    m = ShardMetrics(blocks.shard(1))
    m.timer_lag_seconds.observe(0.01)
    m.flush()
    text = scrape()
    assert value(text, "presence_b2b_timer_lag_seconds_bucket", shard="1", le="0.005") == 0
    assert value(text, "presence_b2b_timer_lag_seconds_bucket", shard="1", le="0.01") == 1


def test_families_appear_only_for_the_processes_that_report_them(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    busy(blocks)
    shards_by_family: dict[str, set[str]] = {}
    for name, labels in samples(scrape()):
        shards_by_family.setdefault(name, set()).add(dict(labels)["shard"])
    assert shards_by_family["presence_b2b_sip_notify_received_total"] == {"0", "1"}
    assert shards_by_family["presence_b2b_qsa_clients"] == {"supervisor"}
    assert shards_by_family["presence_b2b_errors_total"] == {"0", "1", "supervisor"}
    assert value(scrape(), "presence_b2b_qsa_clients", shard="supervisor") == 2


def test_process_figures_come_from_every_live_pid_and_skip_dead_ones(
    blocks: MetricsBlocks,
) -> None:
    child = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        pids = {"supervisor": os.getpid(), "0": child.pid, "1": dead.pid}
        text = generate_latest(make_registry(blocks, lambda: pids)).decode()
    finally:
        child.kill()
        child.wait()
    rss = "presence_b2b_process_resident_memory_bytes"
    assert value(text, rss, shard="supervisor") > 1 << 20
    assert value(text, rss, shard="0") > 0
    assert value(text, "presence_b2b_process_open_fds", shard="supervisor") >= 3
    assert value(text, "presence_b2b_process_cpu_seconds_total", shard="supervisor") > 0
    assert (rss, frozenset({("shard", "1")})) not in samples(text)


def test_promtool_check_metrics_reports_nothing_on_a_scrape(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    busy(blocks)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrape(), capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
