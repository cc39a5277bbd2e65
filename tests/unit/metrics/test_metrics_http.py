"""The scrape endpoint over 127.0.0.1: content type, health, and limits against bad scrapers."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable

import pytest
import uvloop
from presence_b2b.metrics import MetricsBlocks, MetricsServer, make_registry, parse_listen
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

Scenario = Callable[[MetricsServer], Awaitable[None]]


def serve(blocks: MetricsBlocks, scenario: Scenario, **kwargs: object) -> None:
    """Run the endpoint on a free port of 127.0.0.1 on uvloop, as the supervisor does."""
    registry = make_registry(blocks, lambda: {"supervisor": os.getpid()})

    async def main() -> None:
        server = MetricsServer(registry, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]
        await server.start()
        try:
            await asyncio.wait_for(scenario(server), 20)
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *extra]) + "\r\n\r\n").encode()


def test_http_scrape_returns_200_with_the_content_type_prometheus_expects(
    blocks: MetricsBlocks,
) -> None:
    async def scenario(server: MetricsServer) -> None:
        url = f"http://127.0.0.1:{server.port}/metrics"
        loop = asyncio.get_running_loop()
        with await loop.run_in_executor(None, urllib.request.urlopen, url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
        assert "presence_b2b_sip_notify_received" in names

    serve(blocks, scenario)


def test_openmetrics_is_served_when_the_scraper_asks_for_it(blocks: MetricsBlocks) -> None:
    async def scenario(server: MetricsServer) -> None:
        status, headers, body = await exchange(
            server.port, get("/metrics", "Accept: application/openmetrics-text; version=1.0.0")
        )
        assert status == 200
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")

    serve(blocks, scenario)


def test_gzip_is_used_when_the_scraper_accepts_it(blocks: MetricsBlocks) -> None:
    async def scenario(server: MetricsServer) -> None:
        status, headers, body = await exchange(
            server.port, get("/metrics", "Accept-Encoding: gzip")
        )
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert b"presence_b2b_shard_up" in gzip.decompress(body)

    serve(blocks, scenario)


def test_healthz_reports_the_supervisors_health(blocks: MetricsBlocks) -> None:
    state = {"ok": True}

    async def scenario(server: MetricsServer) -> None:
        status, _, body = await exchange(server.port, get("/healthz"))
        assert (status, body) == (200, b"serving\n")
        state["ok"] = False
        status, _, body = await exchange(server.port, get("/healthz"))
        assert (status, body) == (503, b"draining\n")

    serve(blocks, scenario,
          health=lambda: (state["ok"], "serving" if state["ok"] else "draining"))


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (get("/nothing-here"), 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GARBAGE\r\n\r\n", 400),
        (get("/metrics", "X-Filler: " + "a" * 20000), 431),
    ],
)
def test_bad_requests_get_an_error_status_and_a_closed_connection(
    blocks: MetricsBlocks, request_bytes: bytes, expected: int
) -> None:
    async def scenario(server: MetricsServer) -> None:
        status, headers, _ = await exchange(server.port, request_bytes)
        assert status == expected
        assert headers["connection"] == "close"

    serve(blocks, scenario)


def test_a_scraper_that_never_finishes_its_request_is_timed_out(blocks: MetricsBlocks) -> None:
    async def scenario(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and then nothing
        raw = await asyncio.wait_for(reader.read(), 5)
        assert raw.startswith(b"HTTP/1.1 408 ")
        writer.close()

    serve(blocks, scenario, request_timeout=0.2)


def test_idle_connections_do_not_keep_a_scraper_out(blocks: MetricsBlocks) -> None:
    async def scenario(server: MetricsServer) -> None:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(8)]
        await asyncio.sleep(0.1)
        status, _, _ = await asyncio.wait_for(exchange(server.port, get("/metrics")), 2.0)
        assert status == 200
        for _, w in idle:
            w.close()

    serve(blocks, scenario, max_connections=8, request_timeout=10.0)


def test_a_peer_over_its_share_loses_its_oldest_idle_connection(blocks: MetricsBlocks) -> None:
    async def scenario(server: MetricsServer) -> None:
        oldest, newer = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.1)
        third = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(oldest[0].read(), 2.0) == b""
        newer[1].write(get("/healthz"))
        assert (await asyncio.wait_for(newer[0].read(), 2.0)).startswith(b"HTTP/1.1 200 ")
        for _, w in (oldest, newer, third):
            w.close()

    serve(blocks, scenario, max_per_peer=2, request_timeout=10.0)


class SlowCollector(Collector):
    """Takes a while to collect, so that scrapes stay in the middle of being answered."""

    def collect(self) -> Iterable[Metric]:
        time.sleep(0.5)
        return []


def test_a_connection_over_the_cap_is_refused_while_every_slot_is_being_answered() -> None:
    registry = CollectorRegistry()
    registry.register(SlowCollector())

    async def main() -> None:
        server = MetricsServer(registry, "127.0.0.1", 0, max_connections=2)
        await server.start()
        try:
            busy = [
                asyncio.create_task(exchange(server.port, get("/metrics"))) for _ in range(2)
            ]
            await asyncio.sleep(0.2)
            status, _, _ = await exchange(server.port, get("/metrics"))
            assert status == 503
            assert [s for s, _, _ in await asyncio.gather(*busy)] == [200, 200]
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def test_listen_setting_is_split_into_host_and_port() -> None:
    assert parse_listen("127.0.0.1:9478") == ("127.0.0.1", 9478)
    assert parse_listen("[::1]:9100") == ("::1", 9100)
    with pytest.raises(ValueError, match=r"metrics\.listen"):
        parse_listen("localhost")


def test_stop_returns_promptly_while_a_scraper_still_holds_a_connection(
    blocks: MetricsBlocks,
) -> None:
    registry = make_registry(blocks, lambda: {"supervisor": os.getpid()})

    async def main() -> float:
        server = MetricsServer(registry, "127.0.0.1", 0, request_timeout=30.0)
        await server.start()
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metr")
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.stop(), 5)
        writer.close()
        return loop.time() - started

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) < 2.0
