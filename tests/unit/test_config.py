"""The configuration file: seed parameters kept, every mistake named."""

from pathlib import Path

import pytest

from presence_b2b import config


def test_built_in_defaults_are_the_seed_modules_defaults() -> None:
    p = config.load(None).presence_b2b
    assert (p.default_expiration, p.on_error_retry_time, p.wait_for_term_notify) == (3600, 120, 30)
    assert (p.resubscribe_delta, p.min_resubscribe_time, p.max_subscribe_delay) == (30, 30, 0)
    assert p.handle_presence_subscriptions == 1
    assert p.presence_route == p.additional_presence_headers == p.presence_outbound_proxy == ""


def test_seed_parameters_are_read_from_the_presence_b2b_table(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[presence_b2b]\npresence_route = "<sip:my-sip-server.domain.com;lr>"\n'
        "on_error_retry_time = 600\nwait_for_term_notify = 33\nresubscribe_delta = 15\n"
        "min_resubscribe_time = 55\ndefault_expiration = 667\n"
    )
    p = config.load(f).presence_b2b
    assert p.presence_route == "<sip:my-sip-server.domain.com;lr>"
    assert (p.on_error_retry_time, p.wait_for_term_notify, p.default_expiration) == (600, 33, 667)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"presence_b2b": {"default_expiraton": 60}}, "presence_b2b.default_expiraton"),
        ({"presence_b2b": {"default_expiration": "60"}}, "presence_b2b.default_expiration"),
        ({"presence_b2b": {"min_resubscribe_time": 0}}, "presence_b2b.min_resubscribe_time"),
        ({"presence_b2b": {"handle_presence_subscriptions": "on"}}, "presence_b2b.handle_presence"),
        ({"presence_b2b": {"presence_outbound_proxy": "10.0.0.1"}}, "presence_b2b.presence_out"),
        ({"presence_b2b": {"additional_presence_headers": "oops"}}, "presence_b2b.additional"),
        ({"sip": {"port": 70000}}, "sip.port"),
        ({"sip": {"listen": "not a host!"}}, "sip.listen"),
        ({"sip": {"t1": 1.0, "t2": 0.5}}, "sip.t2"),
        ({"server": {"allowed_uids": ["root"]}}, "server.allowed_uids"),
        ({"server": {"status_ring_bytes": 5000}}, "server.status_ring_bytes"),
        ({"metrics": {"listen": "9478"}}, "metrics.listen"),
        ({"logging": {}}, "logging"),
        ({"sip": 5}, "sip"),
    ],
)
def test_a_bad_key_or_value_is_refused_with_the_key_named(
    data: dict[str, object], key: str
) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_mapping(data)
    assert str(err.value).startswith(key)


def test_shard_ports_must_fit_below_65536() -> None:
    with pytest.raises(config.ConfigError, match=r"^sip\.port"):
        config.from_mapping({"sip": {"port": 65535}, "server": {"shards": 2}})


def test_a_file_that_is_not_toml_is_refused_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[presence_b2b\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(f)


def test_flags_accept_booleans_and_store_integers() -> None:
    c = config.from_mapping({"presence_b2b": {"handle_presence_subscriptions": False}})
    assert c.presence_b2b.handle_presence_subscriptions == 0


@pytest.mark.parametrize("value", [2, -1, 100])
def test_handle_presence_subscriptions_takes_any_integer_as_the_seed_does(value: int) -> None:
    c = config.from_mapping({"presence_b2b": {"handle_presence_subscriptions": value}})
    assert c.presence_b2b.handle_presence_subscriptions == value


def _b2b(key: str, value: str) -> config.B2BParams:
    return config.from_mapping({"presence_b2b": {key: value}}).presence_b2b


def _refusal(key: str, value: str) -> str:
    with pytest.raises(config.ConfigError) as err:
        _b2b(key, value)
    message = str(err.value)
    assert message.startswith(f"presence_b2b.{key}: "), message
    return message


@pytest.mark.parametrize(
    "route",
    ["<sip:p.example.com;lr>", "<sip:a.example.com;lr>, <sip:b.example.com:5080;lr>"],
)
def test_presence_route_accepts_route_header_text(route: str) -> None:
    assert _b2b("presence_route", route).presence_route == route


@pytest.mark.parametrize(
    "route",
    [
        "sip:p.example.com;lr",  # a Route entry is a name-addr: <...> is required
        "<tel:+123>",
        "<sip:p.example.com;lr",
        "<sip:p.example.com>, junk",
        "<sip:bad host>",
        ",",
    ],
)
def test_presence_route_is_refused_unless_the_sip_parser_reads_it(route: str) -> None:
    assert "Route header text" in _refusal("presence_route", route)


def test_presence_outbound_proxy_accepts_a_bare_sip_uri() -> None:
    uri = "sips:proxy.example.com:5061;transport=tls"
    assert _b2b("presence_outbound_proxy", uri).presence_outbound_proxy == uri


@pytest.mark.parametrize(
    "uri", ["10.0.0.1", "<sip:proxy.example.com>", "sip:", "sip:proxy:99999", "http://p"]
)
def test_presence_outbound_proxy_is_refused_unless_it_parses_as_a_bare_sip_uri(uri: str) -> None:
    assert "bare SIP URI" in _refusal("presence_outbound_proxy", uri)


def test_additional_headers_accept_token_names_with_lf_or_crlf_line_ends() -> None:
    lines = "P-Generated: yes\r\nX-Empty:\nAccept: application/pidf+xml\r\n"
    assert _b2b("additional_presence_headers", lines).additional_presence_headers == lines


@pytest.mark.parametrize(
    "lines",
    ["oops", "P-Bad Name: x", "X-A: 1\r\n folded", "(x): y", "X-A: 1\rX-B: 2", ": value"],
)
def test_additional_header_lines_must_parse_as_sip_header_lines(lines: str) -> None:
    assert "header lines" in _refusal("additional_presence_headers", lines)


@pytest.mark.parametrize(
    "line",
    [
        "Via: SIP/2.0/UDP x", "From: <sip:a@x>", "To: <sip:a@x>", "Call-ID: 1", "CSeq: 1 X",
        "Max-Forwards: 1", "Contact: <sip:a@x>", "Event: dialog", "Expires: 1",
        "Content-Length: 0", "Route: <sip:p;lr>", "v: x", "f: x", "t: x", "i: x", "m: x",
        "o: x", "l: 0", "call-id: x", "EXPIRES: 5",
    ],
)  # fmt: skip
def test_additional_headers_may_not_set_what_the_stack_writes(line: str) -> None:
    message = _refusal("additional_presence_headers", f"X-Ok: 1\r\n{line}\r\n")
    assert "the service writes it itself" in message


def test_every_key_is_described_with_its_default() -> None:
    keys = {k for k, _, _ in config.describe()}
    assert "presence_b2b.max_subscribe_delay" in keys
    assert all(doc for _, _, doc in config.describe())

