"""pytest fixtures for the real peers (SIPp, Kamailio, PostgreSQL), all on 127.0.0.1.

Every process a fixture starts is stopped at teardown, also when the test failed;
on a failure the peers' reports (exit code, failed checks, error log, last
messages) are printed so they show under "Captured stdout teardown".
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Protocol

import pytest

from tests.peers.dns import DnsServer, dnsmasq_binary
from tests.peers.kamailio import KamailioPresenceServer, peers_missing
from tests.peers.postgres import PostgresServer, postgres_missing
from tests.peers.sipp import SippProcess, run_pair, sipp_binary


class SippUasFactory(Protocol):
    """Signature of the `sipp_uas` fixture."""

    def __call__(
        self,
        scenario: str,
        *,
        port: int | None = None,
        calls: int | None = None,
        recv_timeout_ms: int = 10_000,
        trace_msg: bool = True,
        extra_args: Sequence[str] = (),
        **keys: object,
    ) -> SippProcess: ...


class SippPairRunner(Protocol):
    """Signature of the `sipp_pair` fixture."""

    def __call__(
        self,
        uas_scenario: str,
        uac_scenario: str,
        *,
        uas_keys: Mapping[str, object] | None = None,
        uac_keys: Mapping[str, object] | None = None,
        timeout: float = 30.0,
    ) -> tuple[SippProcess, SippProcess]: ...


class SippUacFactory(Protocol):
    """Signature of the `sipp_uac` fixture."""

    def __call__(
        self,
        scenario: str,
        remote_port: int,
        *,
        calls: int | None = None,
        rate: float | None = None,
        inf_rows: Sequence[Sequence[str]] | None = None,
        recv_timeout_ms: int = 10_000,
        trace_msg: bool = True,
        extra_args: Sequence[str] = (),
        **keys: object,
    ) -> SippProcess: ...


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so teardown knows if the test failed."""
    report = yield
    setattr(item, f"peers_rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"peers_rep_{phase}", None), "failed", False)
        for phase in ("setup", "call")
    )


def _finish(request: pytest.FixtureRequest, procs: list[SippProcess]) -> None:
    failed = _failed(request)
    for proc in procs:
        proc.stop()
        if failed:
            print(f"\n===== {proc!r} (files kept in {proc.workdir}) =====\n{proc.report()}")
        else:
            proc.cleanup()


def _need_sipp() -> None:
    if sipp_binary() is None:
        pytest.skip("sipp (sip-tester) is not installed; run scripts/install-peers")


@pytest.fixture
def sipp_uas(request: pytest.FixtureRequest) -> Iterator[SippUasFactory]:
    """Factory: start a SIPp presence server (UAS) scenario on a free port.

        uas = sipp_uas("uas_happy", expires=4, note="away")
        ... point the subscriber under test at 127.0.0.1:uas.port ...
        uas.expect_success(timeout=10)   # or: assert uas.wait(10) == 0

    Keyword arguments other than the named ones become `-key name value`; the
    scenario's defaults (tests.peers.sipp.SCENARIOS) fill in the rest. The process
    is bound and listening when the factory returns.
    """
    _need_sipp()
    procs: list[SippProcess] = []

    def start(
        scenario: str,
        *,
        port: int | None = None,
        calls: int | None = None,
        recv_timeout_ms: int = 10_000,
        trace_msg: bool = True,
        extra_args: Sequence[str] = (),
        **keys: object,
    ) -> SippProcess:
        proc = SippProcess(
            scenario,
            role="uas",
            port=port,
            calls=calls,
            keys=keys,
            recv_timeout_ms=recv_timeout_ms,
            trace_msg=trace_msg,
            extra_args=extra_args,
        )
        procs.append(proc)
        return proc.start()

    yield start
    _finish(request, procs)


@pytest.fixture
def sipp_uac(request: pytest.FixtureRequest) -> Iterator[SippUacFactory]:
    """Factory: start a SIPp client scenario against 127.0.0.1:remote_port.

    uac = sipp_uac("uac_load", server_port, calls=1000, rate=500,
                   inf_rows=[("rec1", "sub1"), ...])
    uac.expect_success(timeout=60)
    """
    _need_sipp()
    procs: list[SippProcess] = []

    def start(
        scenario: str,
        remote_port: int,
        *,
        calls: int | None = None,
        rate: float | None = None,
        inf_rows: Sequence[Sequence[str]] | None = None,
        recv_timeout_ms: int = 10_000,
        trace_msg: bool = True,
        extra_args: Sequence[str] = (),
        **keys: object,
    ) -> SippProcess:
        proc = SippProcess(
            scenario,
            role="uac",
            remote_port=remote_port,
            calls=calls,
            rate=rate,
            inf_rows=inf_rows,
            keys=keys,
            recv_timeout_ms=recv_timeout_ms,
            trace_msg=trace_msg,
            extra_args=extra_args,
        )
        procs.append(proc)
        return proc.start()

    yield start
    _finish(request, procs)


@pytest.fixture
def sipp_pair(request: pytest.FixtureRequest) -> Iterator[SippPairRunner]:
    """Run a SIPp UAS scenario against a SIPp UAC scenario; both must exit 0.

    uas, uac = sipp_pair("uas_happy", "check_uac_happy", uas_keys={"expires": 4})
    assert uas.count_received("SUBSCRIBE") == 3
    """
    _need_sipp()
    procs: list[SippProcess] = []

    def run(
        uas_scenario: str,
        uac_scenario: str,
        *,
        uas_keys: Mapping[str, object] | None = None,
        uac_keys: Mapping[str, object] | None = None,
        timeout: float = 30.0,
    ) -> tuple[SippProcess, SippProcess]:
        uas, uac = run_pair(
            uas_scenario, uac_scenario, uas_keys=uas_keys, uac_keys=uac_keys, timeout=timeout
        )
        procs.extend((uas, uac))
        return uas, uac

    yield run
    _finish(request, procs)


@pytest.fixture(scope="module")
def kamailio() -> Iterator[KamailioPresenceServer]:
    """A running Kamailio presence server for the module: `.host`, `.port`, `.uri`,
    `.publish(user, basic=, note=, expires=) -> etag`, `.unpublish(user, etag)`.

    Presentities are user@127.0.0.1 (no port); use a distinct user per test, the
    server is shared by the module. `.log_tail()` is handy in assertion messages.
    """
    why = peers_missing()
    if why is not None or sipp_binary() is None:
        pytest.skip(why or "sipp (sip-tester) is not installed; run scripts/install-peers")
    server = KamailioPresenceServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    """dnsmasq serving tests.peers.dns.ZONE on 127.0.0.1: `.port`, `.server`
    ("127.0.0.1:port" for ``[dns] servers``), `.queries()` (what it was asked).

    Answering when the fixture returns; stopped after the module.
    """
    if dnsmasq_binary() is None:
        pytest.skip("dnsmasq is not installed; run scripts/setup --test")
    server = DnsServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the module, in a temporary directory on a free
    loopback port: `.url(db)`, `.create_database() -> url` (one per test keeps
    tests apart), `.log_tail()`."""
    why = postgres_missing()
    if why is not None:
        pytest.skip(why)
    server = PostgresServer()
    try:
        server.start()
    except BaseException:
        print(server.log_tail())
        server.cleanup()
        raise
    try:
        yield server
    finally:
        server.cleanup()


__all__ = [
    "SippPairRunner",
    "SippUacFactory",
    "SippUasFactory",
    "dns_server",
    "kamailio",
    "postgres",
    "pytest_runtest_makereport",
    "sipp_pair",
    "sipp_uac",
    "sipp_uas",
]
