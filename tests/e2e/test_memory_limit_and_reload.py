"""psutil watches shards; SIGHUP reloads what can change while running."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from presence_b2b.toml_writer import toml_tables
from tests.e2e.service import ServiceProcess, wait_for

pytestmark = pytest.mark.integration

Service = Callable[..., ServiceProcess]


def _shard_params(svc: ServiceProcess) -> list[dict[str, Any]]:
    stats = svc.stats() or {}
    return [s.get("params", {}) for s in stats.get("shards", [])]


def test_stats_show_each_shards_cpu_rss_and_open_fds(service: Service) -> None:
    svc = service(shards=2)
    stats = svc.wait_all_shards_up()
    for shard in stats["shards"]:
        assert shard["rss_bytes"] > 1_000_000
        assert shard["open_fds"] > 3
        assert shard["cpu_seconds"] >= 0


def test_a_shard_over_its_memory_limit_is_restarted(service: Service) -> None:
    svc = service(shards=1, config={"server": {"shard_memory_limit_bytes": 1_000_000}})
    first = svc.wait_all_shards_up()["shards"][0]["pid"]

    def restarted() -> bool | None:
        stats = svc.stats()
        if not stats:
            return None
        shard = stats["shards"][0]
        return True if shard["restarts"] >= 1 and shard["pid"] != first else None

    wait_for("the shard restarted for its memory", restarted, 30.0)
    assert "over the limit" in svc.stderr()


def test_sighup_applies_new_presence_b2b_parameters_to_every_shard(service: Service) -> None:
    svc = service(shards=2)
    svc.wait_all_shards_up()
    tables = {k: dict(v) for k, v in svc.tables.items()}
    tables["presence_b2b"]["default_expiration"] = 777
    tables["server"]["log_level"] = "debug"
    svc.config_path.write_text(toml_tables(tables))
    os.kill(svc.pid, signal.SIGHUP)

    def reloaded() -> bool | None:
        params = _shard_params(svc)
        done = params and all(p.get("default_expiration") == 777 for p in params)
        return True if done and (svc.stats() or {}).get("log_level") == "debug" else None

    wait_for("every shard on the new parameters", reloaded, 15.0)


def test_sighup_names_keys_that_need_a_restart_and_keeps_them(service: Service) -> None:
    svc = service(shards=1)
    svc.wait_all_shards_up()
    tables = {k: dict(v) for k, v in svc.tables.items()}
    tables["sip"]["t1"] = 0.2
    svc.config_path.write_text(toml_tables(tables))
    os.kill(svc.pid, signal.SIGHUP)
    wait_for("the restart-only warning", lambda: "sip.t1" in svc.stderr() or None, 15.0)
    assert svc.running()


def test_sighup_with_a_broken_file_keeps_the_running_configuration(service: Service) -> None:
    svc = service(shards=1)
    before = _shard_params(svc)
    svc.config_path.write_text("[presence_b2b]\ndefault_expiration = 'soon'\n")
    os.kill(svc.pid, signal.SIGHUP)
    wait_for("the refusal", lambda: "configuration refused" in svc.stderr() or None, 15.0)
    assert svc.running()
    assert _shard_params(svc) == before


def test_sighup_refuses_a_header_the_stack_writes_and_keeps_the_running_configuration(
    service: Service,
) -> None:
    svc = service(shards=1)
    svc.wait_all_shards_up()
    before = _shard_params(svc)
    assert before and before[0].get("default_expiration") != 777
    tables = {k: dict(v) for k, v in svc.tables.items()}
    tables["presence_b2b"] = {"default_expiration": 777, "additional_presence_headers": "v: x\r\n"}
    svc.config_path.write_text(toml_tables(tables))
    os.kill(svc.pid, signal.SIGHUP)
    refusal = "configuration refused"
    wait_for("the refusal", lambda: refusal in svc.stderr() or None, 15.0)
    assert "presence_b2b.additional_presence_headers" in svc.stderr()
    assert svc.running()
    assert _shard_params(svc) == before


def test_subscriptions_beyond_the_per_client_limit_are_refused_with_a_reason(
    service: Service, clients: Callable[[ServiceProcess], Any]
) -> None:
    svc = service(shards=2, config={"server": {"max_subscriptions_per_client": 2}})
    client = clients(svc)
    for user in ("a", "b", "c"):
        client.subscribe(f"sip:{user}@127.0.0.1:9", "sip:watcher@example.com")

    def refused() -> Any:
        event = client.get(0.5)
        if event is not None and event.kind == "error" and "limit" in event.message.detail:
            return event
        return None

    event = wait_for("the third subscription refused", refused, 15.0)
    assert event.record == "sip:c@127.0.0.1:9"
    assert (svc.stats() or {}).get("subscriptions") == 2
