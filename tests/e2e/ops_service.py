"""The real service with its metrics endpoint, for the operations tests.

`OpsService` is the end-to-end `ServiceProcess` (tests/e2e/service.py) plus a
free TCP port for ``/metrics``; `scrape()` returns the parsed page as a
`Scrape`, so tests compare figures by family and label.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.service import ServiceProcess, wait_for
from tests.peers.ports import LOOPBACK, free_tcp_port

PREFIX = "presence_b2b_"

class Scrape:
    """One parsed ``/metrics`` page: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample of ``presence_b2b_<name>`` whose labels include ``labels``.

        Without a ``shard`` label this adds up every process: the service-wide figure.
        """
        full = PREFIX + name
        return sum(
            value
            for sample, have, value in self.samples
            if sample == full and all(have.get(k) == v for k, v in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        full = PREFIX + name
        return any(
            sample == full and all(have.get(k) == v for k, v in labels.items())
            for sample, have, _ in self.samples
        )


class OpsService(ServiceProcess):
    """``ServiceProcess`` with the metrics endpoint on a free port."""

    def __init__(
        self,
        *,
        shards: int = 2,
        config: Mapping[str, Mapping[str, object]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.metrics_port = free_tcp_port()
        tables: dict[str, dict[str, object]] = {
            "metrics": {"listen": f"{LOOPBACK}:{self.metrics_port}"}
        }
        for name, table in (config or {}).items():
            tables.setdefault(name, {}).update(table)
        super().__init__(shards=shards, config=tables, env=env)

    def start(self, timeout: float = 20.0) -> OpsService:
        """Start serving; return once every shard is up and /metrics answers."""
        super().start(timeout)
        wait_for("an answer from /metrics", self._try_scrape, timeout)
        return self

    def close(self) -> None:
        self.cleanup()

    def shard_pid(self, index: int) -> int:
        stats = self.stats()
        assert stats is not None, "the service does not answer 'stats'"
        pid: int = stats["shards"][index]["pid"]
        return pid

    # ------------------------------------------------------------------ metrics

    def scrape_text(self) -> str:
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body: bytes = resp.read()
            return body.decode()

    def scrape(self) -> Scrape:
        return Scrape(self.scrape_text())

    def _try_scrape(self) -> bool:
        try:
            self.scrape_text()
        except OSError:
            return False
        return True

    def wait_figure(
        self,
        what: str,
        figure: Callable[[Scrape], float],
        expected: float,
        timeout: float = 20.0,
    ) -> Scrape:
        """Scrape until ``figure(scrape) == expected`` (shards publish every 0.5 s).

        On timeout the AssertionError names ``what``, the last figure scraped
        and the tail of the service's log.
        """
        deadline = time.monotonic() + timeout
        while True:
            scrape = self.scrape()
            got = figure(scrape)
            if got == expected:
                return scrape
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{what}: expected {expected:g}, still {got:g} after {timeout:g} s\n"
                    f"service log (tail):\n{self.stderr()[-4000:]}"
                )
            time.sleep(0.1)
