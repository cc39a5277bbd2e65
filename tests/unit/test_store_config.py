"""The [store] table: defaults, and bad values refused with the key named."""

from __future__ import annotations

import socket

import pytest

from presence_b2b import config


def test_the_default_store_is_the_embedded_file_in_the_state_directory() -> None:
    store = config.Config().store
    assert store.url == "sqlite:////var/lib/presence-b2b/dialogs.db"
    assert (store.lease_seconds, store.reattach_grace) == (10.0, 60.0)


def test_an_empty_url_turns_persistence_off() -> None:
    assert config.from_mapping({"store": {"url": ""}}).store.url == ""


def test_the_node_defaults_to_the_host_name() -> None:
    assert config.Config().store.node_name() == socket.gethostname()
    assert config.from_mapping({"store": {"node": "b2b-2"}}).store.node_name() == "b2b-2"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"url": "mysql://db/x"}, "store.url"),
        ({"url": "sqlite:///"}, "store.url"),
        ({"node": "a b"}, "store.node"),
        ({"lease_seconds": 0.5}, "store.lease_seconds"),
        ({"reattach_grace": -1}, "store.reattach_grace"),
        ({"batch_interval_ms": 1.5}, "store.batch_interval_ms"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(config.ConfigError, match=f"^{key}:"):
        config.from_mapping({"store": table})
