"""Shared pytest setup: the real-peer fixtures (SIPp, Kamailio, PostgreSQL) and a hook."""

from tests.peers.fixtures import (  # noqa: F401  (re-exported as fixtures and a hook)
    kamailio,
    postgres,
    pytest_runtest_makereport,
    sipp_pair,
    sipp_uac,
    sipp_uas,
)
