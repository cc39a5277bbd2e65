"""The [dns] table: where look-ups go, how long they may take, how much is cached."""

import pytest

from presence_b2b import config


def test_by_default_the_system_resolvers_are_asked_for_at_most_four_seconds() -> None:
    dns = config.load(None).dns
    assert dns.servers == ()
    assert dns.timeout * dns.attempts == 4.0
    assert dns.cache_size == 10_000


def test_servers_take_an_ip_with_an_optional_port() -> None:
    dns = config.from_mapping(
        {"dns": {"servers": ["10.0.0.53", "127.0.0.1:5353", "::1", "[2001:db8::53]:53"]}}
    ).dns
    assert dns.servers == ("10.0.0.53", "127.0.0.1:5353", "::1", "[2001:db8::53]:53")


@pytest.mark.parametrize(
    "servers",
    [["ns.example.com"], ["10.0.0.53:0"], ["10.0.0.53:99999"], ["[::1]53"], "10.0.0.53", [53]],
)
def test_a_server_that_is_not_an_ip_address_is_refused(servers: object) -> None:
    with pytest.raises(config.ConfigError, match=r"^dns\.servers: "):
        config.from_mapping({"dns": {"servers": servers}})


@pytest.mark.parametrize(
    ("key", "value"), [("timeout", 0), ("attempts", 0), ("cache_size", -1), ("timeout", "2")]
)
def test_limits_out_of_range_are_refused_with_the_key_named(key: str, value: object) -> None:
    with pytest.raises(config.ConfigError, match=rf"^dns\.{key}: "):
        config.from_mapping({"dns": {key: value}})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("10.0.0.53", ("10.0.0.53", 53)),
        ("10.0.0.53:5353", ("10.0.0.53", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
        ("[2001:db8::53]", ("2001:db8::53", 53)),
        ("example.com:53", None),
    ],
)
def test_server_addresses_split_into_ip_and_port(text: str, parsed: object) -> None:
    assert config.dns_server_address(text) == parsed
