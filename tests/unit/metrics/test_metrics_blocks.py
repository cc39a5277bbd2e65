"""Shard blocks: counts cross the fork, survive a respawn, gauges reset, one writer each."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
import uvloop
from metrics_helpers import Scrape, value
from presence_b2b.metrics import BlockError, MetricsBlock, MetricsBlocks, ShardMetrics
from presence_b2b.metrics.block import LAYOUT, Layout
from presence_b2b.metrics.catalog import CATALOG


def run_shard(blocks: MetricsBlocks, index: int, work: Callable[[ShardMetrics], None]) -> None:
    """Fork a 'shard' that counts into its block the way a real one does, and reap it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            m = ShardMetrics(blocks.shard(index))
            work(m)
            m.flush()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def notify_burst(n: int) -> Callable[[ShardMetrics], None]:
    def work(m: ShardMetrics) -> None:
        active = m.sip_notify_received.labels("active")
        for _ in range(n):
            active.inc()
        m.subscriptions.labels("confirmed").set(n)
        m.timer_lag_seconds.observe(0.002)

    return work


def test_counts_made_in_a_forked_shard_show_in_the_parent_scrape(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    run_shard(blocks, 1, notify_burst(5))
    text = scrape()
    name = "presence_b2b_sip_notify_received_total"
    assert value(text, name, shard="1", state="active") == 5
    assert value(text, name, shard="0", state="active") == 0
    assert value(text, "presence_b2b_subscriptions", shard="1", state="confirmed") == 5
    assert value(text, "presence_b2b_timer_lag_seconds_count", shard="1") == 1


def test_a_respawned_shard_continues_its_predecessors_counters(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    blocks.shard_started(0, restart=False)
    run_shard(blocks, 0, notify_burst(3))
    blocks.shard_exited(0)
    blocks.shard_started(0, restart=True)
    run_shard(blocks, 0, notify_burst(4))
    text = scrape()
    assert value(text, "presence_b2b_sip_notify_received_total", shard="0", state="active") == 7
    assert value(text, "presence_b2b_timer_lag_seconds_count", shard="0") == 2
    assert value(text, "presence_b2b_shard_restarts_total", shard="0") == 1
    assert value(text, "presence_b2b_shard_up", shard="0") == 1


def test_shard_exit_zeroes_its_gauges_and_keeps_its_counters(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    blocks.shard_started(1, restart=False)
    run_shard(blocks, 1, notify_burst(2))
    blocks.shard_exited(1)
    text = scrape()
    assert value(text, "presence_b2b_subscriptions", shard="1", state="confirmed") == 0
    assert value(text, "presence_b2b_shard_up", shard="1") == 0
    assert value(text, "presence_b2b_sip_notify_received_total", shard="1", state="active") == 2


def test_a_shard_never_overwrites_the_supervisors_restart_count(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    for restart in (False, True, True):
        blocks.shard_started(0, restart=restart)
        run_shard(blocks, 0, notify_burst(1))
        blocks.shard_exited(0)
    assert value(scrape(), "presence_b2b_shard_restarts_total", shard="0") == 2


def test_a_second_buffered_writer_in_one_process_is_refused(blocks: MetricsBlocks) -> None:
    ShardMetrics(blocks.shard(0))
    with pytest.raises(RuntimeError, match="already has a writer"):
        ShardMetrics(blocks.shard(0))


def test_a_block_laid_out_for_another_catalogue_is_refused() -> None:
    other = Layout.of(CATALOG[:-4])
    assert other.fingerprint != LAYOUT.fingerprint
    theirs = MetricsBlock.create("0", other)
    try:
        dup = os.dup(theirs.fileno())
        with pytest.raises(BlockError):
            MetricsBlock(dup, "0")
        os.close(dup)
    finally:
        theirs.close()


def test_an_unsealed_file_is_refused_as_a_block() -> None:
    fd = os.memfd_create("not-a-block", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, LAYOUT.size)
        with pytest.raises(BlockError, match="sealed"):
            MetricsBlock(fd, "0")
    finally:
        os.close(fd)


def test_start_flushing_publishes_counts_on_the_loop_and_once_more_on_stop(
    blocks: MetricsBlocks,
) -> None:
    m = ShardMetrics(blocks.shard(0))
    slot = LAYOUT.base["subscriptions_established_total"]

    async def scenario() -> tuple[float, float]:
        stop = m.start_flushing(asyncio.get_running_loop(), interval=0.01)
        m.subscriptions_established.inc()
        await asyncio.sleep(0.05)
        seen = blocks.shard(0).snapshot()[slot]
        m.subscriptions_established.inc()
        stop()
        return seen, blocks.shard(0).snapshot()[slot]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == (1.0, 2.0)


def test_response_codes_are_counted_by_class_and_by_common_code(
    blocks: MetricsBlocks, scrape: Scrape
) -> None:
    def work(m: ShardMetrics) -> None:
        for code in (200, 202, 404, 404, 418, 603, 99):
            m.response_received(code)
        for code in (200, 481, 202):
            m.response_sent(code)

    run_shard(blocks, 0, work)
    text = scrape()
    by_class = "presence_b2b_sip_responses_received_total"
    by_code = "presence_b2b_sip_responses_received_by_code_total"
    assert value(text, by_class, shard="0", **{"class": "2xx"}) == 2
    assert value(text, by_class, shard="0", **{"class": "4xx"}) == 3
    assert value(text, by_class, shard="0", **{"class": "6xx"}) == 1
    assert value(text, by_code, shard="0", code="404") == 2
    assert value(text, by_code, shard="0", code="other") == 2
    sent = "presence_b2b_sip_responses_sent_total"
    assert value(text, sent, shard="0", code="481") == 1
    assert value(text, sent, shard="0", code="other") == 1
