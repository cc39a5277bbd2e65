"""Fixtures for the end-to-end tests: the real service, its clients, SIPp peers.

Everything a fixture starts is stopped at teardown, also after a failure; on a
failure the service's stderr is printed (pytest shows it under "Captured
stdout teardown") next to the SIPp reports.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest
from presence_b2b.ipc.client import BlockingQsaClient

from tests.e2e.service import ServiceProcess
from tests.peers.fixtures import SippUasFactory
from tests.peers.postgres import PostgresServer, postgres_missing
from tests.peers.sipp import SippProcess, sipp_binary

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


class ServiceFactory(Protocol):
    def __call__(
        self,
        *,
        shards: int = 2,
        config: Mapping[str, Mapping[str, object]] | None = None,
        env: Mapping[str, str | None] | None = None,
        start: bool = True,
    ) -> ServiceProcess: ...


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"peers_rep_{phase}", None), "failed", False)
        for phase in ("setup", "call")
    )


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    if sipp_binary() is None:
        pytest.skip("sipp (sip-tester) is not installed; run scripts/install-peers")


@pytest.fixture
def service(request: pytest.FixtureRequest) -> Iterator[ServiceFactory]:
    """Factory: a running ``presence-b2b serve`` (every shard up when it returns)."""
    started: list[ServiceProcess] = []

    def make(
        *,
        shards: int = 2,
        config: Mapping[str, Mapping[str, object]] | None = None,
        env: Mapping[str, str | None] | None = None,
        start: bool = True,
    ) -> ServiceProcess:
        svc = ServiceProcess(shards=shards, config=config, env=env)
        started.append(svc)
        return svc.start() if start else svc

    yield make
    failed = _failed(request)
    for svc in started:
        svc.kill()
        if failed:
            print(f"\n===== {svc!r} stderr =====\n{svc.stderr()}")
        else:
            shutil.rmtree(svc.workdir, ignore_errors=True)


@pytest.fixture
def clients() -> Iterator[Callable[[ServiceProcess], BlockingQsaClient]]:
    """Factory: a connected BlockingQsaClient on a service, closed at teardown."""
    made: list[BlockingQsaClient] = []

    def connect(svc: ServiceProcess, name: str = "e2e") -> BlockingQsaClient:
        client = BlockingQsaClient(svc.control_socket, name=name)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


@pytest.fixture
def hold_uas(sipp_uas: SippUasFactory) -> Iterator[Callable[..., SippProcess]]:
    """Factory: a SIPp presence server that keeps ``calls`` dialogs open until unsubscribed
    (``scenario``: uas_hold.xml, or uas_list_hold.xml for a resource list server).

    At teardown it is stopped at once: with dialogs still open SIPp's graceful quit
    would only wait them out (the peers' fixture still prints its report).
    """
    started: list[SippProcess] = []

    def start(calls: int = 10, scenario: str = "uas_hold.xml", **keys: Any) -> SippProcess:
        keys.setdefault("expires", 60)
        keys.setdefault("note", "at lunch")
        uas = sipp_uas(str(SCENARIOS / scenario), calls=calls, recv_timeout_ms=120_000, **keys)
        started.append(uas)
        return uas

    yield start
    for uas in started:
        uas.stop(grace=0.1)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, not started: the test starts (and
    may stop) it when its story needs the database. Skipped without PostgreSQL."""
    why = postgres_missing()
    if why is not None:
        pytest.skip(why)  # the suite's set-up installs it; a bare checkout may not have it
    server = PostgresServer()
    try:
        yield server
    finally:
        server.cleanup()
