"""Per-client limits on by default, and groups named in the access lists."""

import grp
import os

import pytest

from presence_b2b import config


def test_a_client_is_limited_in_subscriptions_and_subscribe_rate_by_default() -> None:
    cfg = config.Config()
    assert cfg.server.max_subscriptions_per_client > 0
    assert cfg.sip.subscribe_rate > 0


def test_zero_still_turns_the_per_client_limits_off() -> None:
    cfg = config.from_mapping(
        {"server": {"max_subscriptions_per_client": 0}, "sip": {"subscribe_rate": 0}}
    )
    assert (cfg.server.max_subscriptions_per_client, cfg.sip.subscribe_rate) == (0, 0.0)


def test_every_uid_gets_a_share_of_the_global_caps_by_default() -> None:
    s = config.Config().server
    assert 0 < s.max_clients_per_uid < 1024
    assert 0 < s.max_handshakes_per_uid < 64
    assert 0 < s.max_admin_sessions_per_uid < 16


@pytest.mark.parametrize("key", ["allowed_gids", "admin_gids"])
def test_group_names_are_resolved_to_gids_at_load(key: str) -> None:
    own = grp.getgrgid(os.getgid())
    cfg = config.from_mapping({"server": {key: [own.gr_name, 4242]}})
    assert getattr(cfg.server, key) == (own.gr_gid, 4242)


@pytest.mark.parametrize("key", ["allowed_gids", "admin_gids"])
def test_an_unknown_group_name_is_refused_with_the_key_named(key: str) -> None:
    with pytest.raises(config.ConfigError, match=rf"server\.{key}: no such group: 'no-such-grp'"):
        config.from_mapping({"server": {key: ["no-such-grp"]}})
