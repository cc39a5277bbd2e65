"""[dns] servers in the form c-ares takes: ip:port, IPv6 in brackets, port 53 by default."""

from presence_b2b.shard.dns import c_ares_servers


def test_servers_get_an_explicit_port_and_ipv6_gets_brackets() -> None:
    assert c_ares_servers(("10.0.0.53", "127.0.0.1:5353", "::1", "[2001:db8::53]:5300")) == [
        "10.0.0.53:53",
        "127.0.0.1:5353",
        "[::1]:53",
        "[2001:db8::53]:5300",
    ]


def test_no_servers_means_the_system_configuration() -> None:
    assert c_ares_servers(()) == []
