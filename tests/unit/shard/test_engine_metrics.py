"""The service's observer counts the engine's events into the metrics block."""

from __future__ import annotations

from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.shard.engine_metrics import MetricsObserver
from presence_b2b.shard.subscription import State


def test_events_land_in_their_series_and_unknown_labels_in_other() -> None:
    m = ShardMetrics(MetricsBlock.create("0"))
    obs = MetricsObserver(m)
    obs.request_sent("retransmission")
    obs.notify_received("weird")
    obs.error("internal")
    obs.failed("internal")
    obs.terminated("made-up")
    obs.state_changed(None, State.CONFIRMED)
    obs.state_changed(State.CONFIRMED, State.WAITING)
    assert m.sip_requests_sent.labels("SUBSCRIBE", "retransmission").value == 1
    assert m.sip_retransmissions.labels("sent").value == 1
    assert m.sip_notify_received.labels("other").value == 1
    assert m.errors.labels("internal").value == 1
    assert m.subscriptions_failed.labels("internal").value == 1
    assert m.subscriptions_terminated.labels("other").value == 1
    assert m.subscriptions.labels("confirmed").value == 0
    assert m.subscriptions.labels("waiting").value == 1
