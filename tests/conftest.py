"""Shared pytest setup: the real-peer fixtures (sipp_uas, sipp_uac, sipp_pair, kamailio,
dns_server) and the builds of the C client (c_build)."""

from tests.cclient.build import c_build  # noqa: F401  (re-exported as a fixture)
from tests.peers.fixtures import (  # noqa: F401  (re-exported as fixtures and a hook)
    dns_server,
    kamailio,
    pytest_runtest_makereport,
    sipp_pair,
    sipp_uac,
    sipp_uas,
)
