"""The [sip] transport keys and the [sip.tls] table."""

from __future__ import annotations

import pytest

from presence_b2b import config
from presence_b2b.config import ConfigError


def test_udp_and_tcp_are_the_default_transports() -> None:
    assert config.Config().sip.transports == ("udp", "tcp")


def test_tls_settings_are_read_from_the_sip_tls_table() -> None:
    cfg = config.from_mapping(
        {
            "sip": {
                "transports": ["udp", "tcp", "tls"],
                "tls_port": 5061,
                "tls": {"ca_file": "/ca.pem", "cert_file": "/b2b.pem", "verify_server": False},
            }
        }
    )
    assert cfg.sip.transports == ("udp", "tcp", "tls")
    assert cfg.sip.tls_port == 5061
    assert (cfg.sip.tls.ca_file, cfg.sip.tls.cert_file) == ("/ca.pem", "/b2b.pem")
    assert cfg.sip.tls.verify_server is False


def test_an_unknown_transport_is_refused_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"^sip\.transports: "):
        config.from_mapping({"sip": {"transports": ["udp", "sctp"]}})


def test_an_unknown_key_in_sip_tls_is_refused_with_its_dotted_name() -> None:
    with pytest.raises(ConfigError, match=r"^sip\.tls\.ca_fiel: unknown key"):
        config.from_mapping({"sip": {"tls": {"ca_fiel": "/ca.pem"}}})


def test_a_relative_ca_file_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^sip\.tls\.ca_file: must be an absolute path"):
        config.from_mapping({"sip": {"tls": {"ca_file": "ca.pem"}}})


def test_tls_listeners_need_a_certificate() -> None:
    with pytest.raises(ConfigError, match=r"^sip\.tls\.cert_file: needed"):
        config.from_mapping({"sip": {"transports": ["tls"]}})


def test_the_tls_keys_are_described_under_their_dotted_names() -> None:
    keys = [key for key, _, _ in config.describe()]
    assert "sip.tls.verify_server" in keys
    assert keys.index("sip.tls.ca_file") > keys.index("sip.transports")


def test_the_tables_a_shard_is_configured_with_rebuild_the_tls_settings() -> None:
    from presence_b2b.server.supervisor import config_tables

    cfg = config.from_mapping(
        {"sip": {"transports": ["tcp", "tls"], "tls": {"cert_file": "/b2b.pem"}}}
    )
    assert config.from_mapping(config_tables(cfg)) == cfg
