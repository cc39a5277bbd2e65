"""Alert rules load, name only catalogue metrics and fire when they should; the dashboard too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from presence_b2b.metrics.catalog import sample_names

OPS = Path(__file__).resolve().parents[3] / "ops"
ALERTS = OPS / "alerts.yml"
DASHBOARD = OPS / "grafana-dashboard.json"

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: Names that may follow a selector position without being ours.
_FOREIGN_METRICS = {"up"}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def alert_exprs() -> dict[str, str]:
    """alert name -> expr, read from alerts.yml (one-line ``expr:`` or an ``expr: |`` block)."""
    exprs: dict[str, str] = {}
    lines = ALERTS.read_text().splitlines()
    name = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"\s*- alert: (\w+)$", line):
            name = m[1]
        elif m := re.match(r"(\s*)expr: (.*)$", line):
            if m[2] == "|":
                indent = len(m[1])
                block = []
                while i + 1 < len(lines) and (
                    not lines[i + 1].strip() or _indent(lines[i + 1]) > indent
                ):
                    i += 1
                    block.append(lines[i].strip())
                exprs[name] = " ".join(b for b in block if b)
            else:
                exprs[name] = m[2]
        i += 1
    return exprs


def metric_names(expr: str) -> set[str]:
    """Identifiers used as metric names: ours by prefix, others where a selector starts."""
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_labels = re.sub(r"\{[^}]*\}", "{}", no_strings)
    names = {t for t in _IDENT.findall(no_labels) if t.startswith("presence_b2b_")}
    names |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", no_labels))
    return names


def test_alert_rules_cover_the_operational_failures() -> None:
    assert set(alert_exprs()) >= {
        "PresenceB2BScrapeDown", "PresenceB2BShardRestartLoop", "PresenceB2BSubscriptionsFailing",
        "PresenceB2BTimersLagging", "PresenceB2BRingOverflow", "PresenceB2BStatusMergesHigh",
        "PresenceB2BNoNotifies",
    }  # fmt: skip


def test_alert_rules_reference_only_catalogue_metrics() -> None:
    known = sample_names() | _FOREIGN_METRICS
    for name, expr in alert_exprs().items():
        assert metric_names(expr), name
        assert metric_names(expr) <= known, (name, metric_names(expr) - known)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return path


def test_promtool_check_rules_is_clean() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


S = 'job="presence-b2b",instance="h:9478"'

#: (alert, input series, minutes after start to evaluate, should it fire)
SCENARIOS: list[tuple[str, list[tuple[str, str]], int, bool]] = [
    ("PresenceB2BScrapeDown", [(f"up{{{S}}}", "0x10")], 5, True),
    ("PresenceB2BScrapeDown", [(f"up{{{S}}}", "1x10")], 5, False),
    ("PresenceB2BShardRestartLoop",
     [(f'presence_b2b_shard_restarts_total{{{S},shard="1"}}', "0+1x30")], 20, True),
    ("PresenceB2BShardRestartLoop",
     [(f'presence_b2b_shard_restarts_total{{{S},shard="1"}}', "2x30")], 20, False),
    ("PresenceB2BSubscriptionsFailing",
     [(f'presence_b2b_sip_requests_sent_total{{{S},shard="0",method="SUBSCRIBE",kind="initial"}}',
       "0+10x30"),
      (f'presence_b2b_subscriptions_failed_total{{{S},shard="0",kind="timeout"}}', "0+5x30")],
     20, True),
    ("PresenceB2BSubscriptionsFailing",
     [(f'presence_b2b_sip_requests_sent_total{{{S},shard="0",method="SUBSCRIBE",kind="initial"}}',
       "0+10x30"),
      (f'presence_b2b_subscriptions_failed_total{{{S},shard="0",kind="timeout"}}', "0+1x30")],
     20, False),
    ("PresenceB2BTimersLagging",
     [(f'presence_b2b_timer_lag_seconds_bucket{{{S},shard="0",le="0.5"}}', "0+1x30"),
      (f'presence_b2b_timer_lag_seconds_bucket{{{S},shard="0",le="1.0"}}', "0+10x30"),
      (f'presence_b2b_timer_lag_seconds_bucket{{{S},shard="0",le="+Inf"}}', "0+10x30")],
     20, True),
    ("PresenceB2BTimersLagging",
     [(f'presence_b2b_timer_lag_seconds_bucket{{{S},shard="0",le="0.5"}}', "0+10x30"),
      (f'presence_b2b_timer_lag_seconds_bucket{{{S},shard="0",le="1.0"}}', "0+10x30"),
      (f'presence_b2b_timer_lag_seconds_bucket{{{S},shard="0",le="+Inf"}}', "0+10x30")],
     20, False),
    ("PresenceB2BRingOverflow",
     [(f'presence_b2b_errors_total{{{S},shard="2",kind="ring_overflow"}}', "0+1x30")], 20, True),
    ("PresenceB2BRingOverflow",
     [(f'presence_b2b_errors_total{{{S},shard="2",kind="ring_merge"}}', "0+1x30")], 20, False),
    ("PresenceB2BStatusMergesHigh",
     [(f'presence_b2b_qsa_status_merges_total{{{S},shard="0"}}', "0+10x30"),
      (f'presence_b2b_qsa_status_sent_total{{{S},shard="0"}}', "0+100x30")], 20, True),
    ("PresenceB2BNoNotifies",
     [(f'presence_b2b_sip_notify_received_total{{{S},shard="0",state="active"}}', "5x200"),
      (f'presence_b2b_subscriptions{{{S},shard="0",state="confirmed"}}', "3x200")], 150, True),
    ("PresenceB2BNoNotifies",
     [(f'presence_b2b_sip_notify_received_total{{{S},shard="0",state="active"}}', "0+1x200"),
      (f'presence_b2b_subscriptions{{{S},shard="0",state="confirmed"}}', "3x200")], 150, False),
    ("PresenceB2BNoNotifies",
     [(f'presence_b2b_sip_notify_received_total{{{S},shard="0",state="active"}}', "5x200"),
      (f'presence_b2b_subscriptions{{{S},shard="0",state="confirmed"}}', "0x200")], 150, False),
]  # fmt: skip


def test_alert_expressions_fire_on_trouble_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    tool = promtool()
    exprs = alert_exprs()
    tests: list[dict[str, Any]] = []
    for alert, series, minutes, fires in SCENARIOS:
        tests.append({
            "name": f"{alert} fires={fires}",
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [{
                "expr": f"count({exprs[alert]})",
                "eval_time": f"{minutes}m",
                "exp_samples": [{"labels": "{}", "value": 1}] if fires else [],
            }],
        })  # fmt: skip
    spec = tmp_path / "alerts_test.yml"  # JSON is YAML
    spec.write_text(json.dumps({"rule_files": [str(ALERTS)], "tests": tests}))
    result = subprocess.run(
        [tool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_exprs() -> list[str]:
    d = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in d["templating"]["list"] if "definition" in v]
    return exprs


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    d = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    assert d["uid"] == "presence-b2b" and d["panels"]
    for p in d["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"], p["title"]


def test_dashboard_queries_reference_only_catalogue_metrics() -> None:
    known = sample_names()
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = metric_names(expr.replace("label_values(", "(")) - {"label_values"}
        assert names, expr
        assert names <= known, (expr, names - known)
        used |= names
    for wanted in ("presence_b2b_subscriptions", "presence_b2b_sip_notify_received_total",
                   "presence_b2b_errors_total", "presence_b2b_timer_lag_seconds_bucket",
                   "presence_b2b_qsa_ring_depth_bytes", "presence_b2b_shard_restarts_total",
                   "presence_b2b_process_cpu_seconds_total",
                   "presence_b2b_process_resident_memory_bytes"):
        assert wanted in used, wanted


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    tool = promtool()
    rules = tmp_path / "dashboard_rules.yml"
    grafana_vars = {"$__rate_interval": "5m", "$instance": ".*"}
    records = []
    for n, query in enumerate(dashboard_exprs()):
        if query.startswith("label_values("):
            continue
        expr = query
        for var, val in grafana_vars.items():
            expr = expr.replace(var, val)
        records.append({"record": f"dashboard:query{n}", "expr": expr})
    rules.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": records}]}))
    result = subprocess.run(
        [tool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
