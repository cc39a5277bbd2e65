"""bench/dns_lookups.py runs against the test dnsmasq and ends with its JSON report line.

Only the shape of the report is checked, never a figure against a goal.
"""

from __future__ import annotations

import pytest

from tests.integration.test_bench_e2e_smoke import last_json_line
from tests.peers.dns import dnsmasq_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(dnsmasq_binary() is None, reason="dnsmasq is not installed"),
]


def test_dns_bench_quick_run_reports_latency_rate_and_cpu_per_client() -> None:
    report = last_json_line("dns_lookups.py", timeout=90)
    assert {"aiodns", "adapter"} <= report.keys()
    for figures in report.values():
        assert isinstance(figures, dict)
        assert figures.keys() == {"serial_us", "burst_per_s", "cpu_us"}
        assert all(value > 0 for value in figures.values())
