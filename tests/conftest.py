"""Shared pytest setup: the real-peer fixtures (SIPp, Kamailio, dnsmasq, PostgreSQL),
the builds of the C client (c_build) and a hook."""

from tests.cclient.build import c_build  # noqa: F401  (re-exported as a fixture)
from tests.peers.fixtures import (  # noqa: F401  (re-exported as fixtures and a hook)
    dns_server,
    kamailio,
    postgres,
    pytest_runtest_makereport,
    sipp_pair,
    sipp_uac,
    sipp_uas,
)


def pytest_sessionstart(session: object) -> None:
    """The compiled run of the suite (PRESENCE_B2B_EXPECT_COMPILED=1) must really
    run compiled: a stale or missing build would quietly test the pure code twice."""
    import importlib
    import os

    if os.environ.get("PRESENCE_B2B_EXPECT_COMPILED") != "1":
        return
    from presence_b2b.compiled import HOT_MODULES, is_compiled, loaded_compiled

    assert is_compiled(), "PRESENCE_B2B_EXPECT_COMPILED=1 but no usable compiled build"
    for name in HOT_MODULES:
        importlib.import_module(name)
    interpreted = [m for m in HOT_MODULES if not loaded_compiled(m)]
    assert not interpreted, f"hot modules loaded from Python: {interpreted}"
