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
