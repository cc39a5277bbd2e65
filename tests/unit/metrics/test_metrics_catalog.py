"""The catalogue is complete, bounded and follows Prometheus naming; binding enforces it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from presence_b2b.metrics import CATALOG, MetricsBlocks, ShardMetrics
from presence_b2b.metrics.block import LAYOUT
from presence_b2b.metrics.catalog import BY_NAME, PREFIX, RESERVED_LABELS, Family, Label, _check

REQUIRED = {
    "timers_armed_total": {"kind": {"start-delay", "refresh", "retry", "term-wait",
                                    "no-notify", "transaction"}},
    "timers_fired_total": {"kind": {"start-delay", "refresh", "retry", "term-wait",
                                    "no-notify", "transaction"}},
    "timer_lag_seconds": {},
    "sip_requests_sent_total": {"method": {"SUBSCRIBE"},
                                "kind": {"initial", "refresh", "unsubscribe", "retransmission"}},
    "sip_responses_received_total": {"class": {"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}},
    "sip_responses_received_by_code_total": {"code": {
        "200", "202", "302", "401", "403", "404", "407", "408", "423", "480", "481",
        "489", "500", "503", "other"}},
    "sip_transaction_timeouts_total": {},
    "sip_retransmissions_total": {"direction": {"sent", "received"}},
    "sip_notify_received_total": {"state": {"active", "pending", "terminated", "other"}},
    "sip_notify_by_package_total": {
        "package": {"presence", "dialog", "reg", "message-summary", "presence.winfo", "other"},
        "dialog": {"matched", "unmatched"},
    },
    "list_refreshes_total": {},
    "sip_responses_sent_total": {"code": {"200", "400", "481", "500", "other"}},
    "subscriptions": {"state": {
        "unconfirmed", "unconfirmed_destroy", "confirmed", "waiting", "resubscription",
        "resubscription_destroy", "waiting_for_termination", "predestroyed", "destroyed"}},
    "subscriptions_established_total": {},
    "subscriptions_failed_total": {"kind": {"sip-error", "timeout", "no-notify", "terminated",
                                            "transport", "refused", "dns", "tls", "auth",
                                            "internal", "too-large"}},
    "subscriptions_terminated_total": {"reason": {
        "deactivated", "probation", "rejected", "timeout", "giveup", "noresource",
        "invariant", "unsubscribed", "other"}},
    "dialogs": {},
    "dialogs_resting": {},
    "gc_pause_seconds": {"generation": {"0", "1", "2"}},
    "subscribers": {},
    "notify_to_client_seconds": {},
    "errors_total": {"kind": {"parse", "pidf", "body", "list", "transport", "internal",
                              "unanswered",
                              "ring_overflow", "ring_merge", "bad_client_record"}},
    "qsa_clients": {},
    "qsa_connections_refused_total": {},
    "qsa_status_merges_total": {},
    "shard_restarts_total": {},
    "shard_up": {},
    "process_cpu_seconds_total": {},
    "process_resident_memory_bytes": {},
    "process_open_fds": {},
}  # fmt: skip


def test_catalogue_holds_every_required_family_with_its_label_values() -> None:
    for name, labels in REQUIRED.items():
        family = BY_NAME[name]
        assert {lb.name: set(lb.values) for lb in family.labels} == labels, name
    assert {lb.name for lb in BY_NAME["qsa_ring_depth_bytes"].labels} == {"direction"}
    assert BY_NAME["sip_parse_errors_total"].label_names == ("kind",)
    assert BY_NAME["timer_lag_seconds"].type == "histogram"
    assert BY_NAME["notify_to_client_seconds"].type == "histogram"


def test_names_follow_prometheus_conventions() -> None:
    for f in CATALOG:
        assert f.full_name.startswith(PREFIX)
        assert f.help and f.help.endswith(".")
        assert (f.type == "counter") == f.name.endswith("_total"), f.name
        if f.name.endswith(("_seconds", "_seconds_total")):
            assert "ms" not in f.name.split("_")
        assert not f.name.endswith(("_count", "_sum", "_bucket")), f.name


def test_labels_are_enumerated_and_never_free_form() -> None:
    free_form = {"uri", "record", "subscriber", "call_id", "callid", "pid", "client", "host"}
    for f in CATALOG:
        for lb in f.labels:
            assert lb.name not in free_form | RESERVED_LABELS, (f.name, lb.name)
            assert 0 < len(lb.values) <= 20, (f.name, lb.name)
    assert all(f.series_count <= 20 for f in CATALOG)


@pytest.mark.parametrize(
    ("family", "problem"),
    [
        (Family("xx_total", "gauge", "x."), "_total"),
        (Family("xx", "counter", "x."), "_total"),
        (Family("xx_seconds", "histogram", "x.", buckets=(1.0, 0.5)), "ascending"),
        (Family("xx", "gauge", "x.", (Label("shard", ("a",)),)), "label name"),
        (Family("xx", "gauge", "x.", (Label("uri", ("sip:a@b",)),)), "plain token"),
        (Family("Bad", "gauge", "x."), "snake_case"),
    ],
)
def test_a_malformed_family_is_refused_at_import(family: Family, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _check(family)


def test_slots_of_different_series_never_overlap() -> None:
    taken: set[int] = set()
    for f in CATALOG:
        if f.source != "block":
            continue
        for values in f.series():
            first = LAYOUT.slot(f, values)
            span = set(range(first, first + f.slots_per_series))
            assert not span & taken, f.name
            taken |= span
    assert taken == set(range(LAYOUT.slots))


def _class_annotations(source: Path, name: str) -> set[str]:
    """The names a class annotates in its body, read from the source: a compiled
    class keeps no ``__annotations__``."""
    tree = ast.parse(source.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    annotated = (n for n in cls.body if isinstance(n, ast.AnnAssign))
    return {n.target.id for n in annotated if isinstance(n.target, ast.Name)}


def test_shard_metrics_has_one_typed_attribute_per_counted_family() -> None:
    source = Path(__file__).resolve().parents[3] / "metrics" / "shard.py"
    counted = {f.attr for f in CATALOG if f.source == "block"}
    assert _class_annotations(source, ShardMetrics.__name__) == counted


def test_label_value_outside_the_catalogue_is_refused_naming_the_label(
    blocks: MetricsBlocks,
) -> None:
    m = ShardMetrics(blocks.shard(0))
    with pytest.raises(ValueError, match=r"label 'state' does not allow 'sip:alice@example.com'"):
        m.sip_notify_received.labels("sip:alice@example.com")
    with pytest.raises(ValueError, match="label 'kind' does not allow 'bogus'"):
        m.sip_requests_sent.labels("SUBSCRIBE", "bogus")
    with pytest.raises(ValueError, match="label 'code' does not allow '404'"):
        m.sip_responses_sent.labels("404")


def test_unknown_or_missing_label_names_are_refused_naming_them(blocks: MetricsBlocks) -> None:
    m = ShardMetrics(blocks.shard(0))
    with pytest.raises(ValueError, match="unknown label 'pid'"):
        m.errors.labels(kind="parse", pid="1234")
    with pytest.raises(ValueError, match="missing label 'kind'"):
        m.sip_requests_sent.labels(method="SUBSCRIBE")
    with pytest.raises(ValueError, match=r"expected 2 label value\(s\)"):
        m.sip_requests_sent.labels("SUBSCRIBE")
    assert m.sip_requests_sent.labels(method="SUBSCRIBE", kind="refresh") is (
        m.sip_requests_sent.labels("SUBSCRIBE", "refresh")
    )


def test_every_family_is_documented_in_docs_metrics_md() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
    for f in CATALOG:
        assert f"`{f.name}`" in doc, f.name


def test_every_state_of_the_machine_is_a_subscriptions_label_value() -> None:
    from presence_b2b.metrics.catalog import SUBSCRIPTION_STATES, state_label
    from presence_b2b.shard.subscription import State

    assert SUBSCRIPTION_STATES.values == tuple(state_label(s) for s in State)
    assert state_label(State.WAITING_FOR_TERMINATION) == "waiting_for_termination"


def test_every_timer_kind_of_the_machine_and_the_transaction_timer_are_kind_values() -> None:
    from presence_b2b.metrics.catalog import TIMER_KINDS, TRANSACTION_TIMER
    from presence_b2b.shard.subscription import TimerKind

    assert set(TIMER_KINDS.values) == {k.value for k in TimerKind} | {TRANSACTION_TIMER}
