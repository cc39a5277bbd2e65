"""Service configuration: one TOML file, validated completely before anything starts.

The ``[presence_b2b]`` table keeps the ten parameters of the SER module under
their original names and with their original defaults, so an operator's old
``modparam`` lines translate one to one. Every other table is new. Unknown
keys and bad values are refused with the dotted key named, because a typo that
silently falls back to a default is the worst kind of configuration error.
"""

from __future__ import annotations

import dataclasses
import grp
import ipaddress
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sip.headers import parse_route, parse_uri
from .sip.message import SipParseError, parse_header_line


class ConfigError(ValueError):
    """A configuration problem; the message starts with the dotted key."""


Check = Callable[[Any], str | None]


def _int_at_least(low: int) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {v!r}"
        if v < low:
            return f"must be an integer >= {low}, got {v}"
        return None

    return check


def _number_at_least(low: float, *, strict: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"must be a number, got {v!r}"
        if v < low or (strict and v == low):
            return f"must be a number {'>' if strict else '>='} {low}, got {v}"
        return None

    return check


def _switch(v: Any) -> str | None:
    """The SER module's integer switches: any integer, non-zero meaning on."""
    if isinstance(v, int):
        return None
    return f"must be an integer (0: off, any other: on) or true/false, got {v!r}"


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) else f"must be a string, got {v!r}"


def _sip_uri_or_empty(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"must be a string, got {v!r}"
    if not v:
        return None
    example = "a bare SIP URI such as 'sip:proxy.example.com:5060'"
    if v.lstrip().startswith("<"):
        return f"must be {example}, without <>, got {v!r}"
    try:
        parse_uri(v)
    except SipParseError as exc:
        return f"must be {example} ({exc}), got {v!r}"
    return None


def _route_or_empty(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"must be a string, got {v!r}"
    if not v:
        return None
    try:
        parse_route(v)
    except SipParseError as exc:
        return f"must be Route header text such as '<sip:p.example.com;lr>' ({exc}), got {v!r}"
    return None


#: Headers the stack writes into every SUBSCRIBE itself; one more from the
#: configuration would contradict or duplicate them (compact forms map onto these).
STACK_HEADERS = frozenset(
    {
        "Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact", "Event",
        "Expires", "Content-Length", "Route",
    }
)  # fmt: skip


def _headers(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"must be a string, got {v!r}"
    for line in v.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        try:
            name, _ = parse_header_line(line)
        except SipParseError as exc:
            return f"must be 'Name: value' header lines ({exc})"
        if name in STACK_HEADERS:
            return f"must not set {name}: the service writes it itself, got {line!r}"
    return None


def _host(v: Any) -> str | None:
    if not isinstance(v, str) or not v:
        return f"must be a host name or IP address, got {v!r}"
    try:
        ipaddress.ip_address(v)
    except ValueError:
        if not all(part and part.replace("-", "").isalnum() for part in v.split(".")):
            return f"must be a host name or IP address, got {v!r}"
    return None


def _hosts(v: Any) -> str | None:
    if not isinstance(v, list | tuple) or not v or len(set(v)) != len(v):
        return f"must be a host or a non-empty list of distinct hosts, got {v!r}"
    for host in v:
        problem = _host(host)
        if problem:
            return problem
    return None


def _port(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        return f"must be a port number 1..65535, got {v!r}"
    return None


def _host_port(v: Any) -> str | None:
    if not isinstance(v, str) or ":" not in v:
        return f"must be 'host:port', got {v!r}"
    host, _, port = v.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit():
        return f"must be 'host:port', got {v!r}"
    return _host(host) or _port(int(port))


def _id_list(v: Any) -> str | None:
    if not isinstance(v, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v
    ):
        return f"must be a list of numeric ids, got {v!r}"
    return None


def group_id(group: int | str) -> int | None:
    """A gid as given, or a group name's gid from the group database; None if unknown."""
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def _group_list(v: Any) -> str | None:
    if not isinstance(v, list) or not all(
        (isinstance(g, int) and not isinstance(g, bool) and g >= 0) or isinstance(g, str)
        for g in v
    ):
        return f"must be a list of group names or numeric gids, got {v!r}"
    unknown = [g for g in v if group_id(g) is None]
    if unknown:
        return f"no such group: {', '.join(map(repr, unknown))}"
    return None


def _group_ids(v: list[int | str]) -> tuple[int, ...]:
    """Group names become gids at load, so a renamed group cannot widen access later."""
    return tuple(gid for g in v if (gid := group_id(g)) is not None)


def _path(v: Any) -> str | None:
    if not isinstance(v, str) or not v.startswith("/"):
        return f"must be an absolute path, got {v!r}"
    return None


def _power_of_two(low: int) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or v < low or v & (v - 1):
            return f"must be a power of two >= {low}, got {v!r}"
        return None

    return check


def _log_level(v: Any) -> str | None:
    if v not in ("debug", "info", "warning", "error"):
        return f"must be one of debug, info, warning, error, got {v!r}"
    return None


def _opt(
    check: Check, default: Any, doc: str, convert: Callable[[Any], Any] | None = None
) -> Any:
    return field(default=default, metadata={"check": check, "doc": doc, "convert": convert})


@dataclass(frozen=True, slots=True)
class B2BParams:
    """The SER module's parameters: same names, meanings and defaults."""

    default_expiration: int = _opt(
        _int_at_least(1), 3600, "Expires asked for in every SUBSCRIBE that is not an unsubscribe"
    )
    on_error_retry_time: int = _opt(
        _int_at_least(1), 120, "seconds before a new attempt after an error"
    )
    presence_route: str = _opt(
        _route_or_empty, "", "Route set preset on every new dialog, e.g. '<sip:p.example.com;lr>'"
    )
    additional_presence_headers: str = _opt(
        _headers, "", "'Name: value' lines appended to every SUBSCRIBE (not the stack's own)"
    )
    wait_for_term_notify: int = _opt(
        _int_at_least(0), 30, "seconds to wait for the terminating NOTIFY after Expires: 0"
    )
    resubscribe_delta: int = _opt(
        _int_at_least(0), 30, "refresh this many seconds before the granted expiry"
    )
    min_resubscribe_time: int = _opt(
        _int_at_least(1), 30, "lower bound of the refresh timer in seconds"
    )
    handle_presence_subscriptions: int = _opt(
        _switch, 1, "0 refuses QSA presence subscriptions with an error status; other integers: on"
    )
    presence_outbound_proxy: str = _opt(
        _sip_uri_or_empty, "", "bare SIP URI every out-of-dialog SUBSCRIBE is sent to"
    )
    max_subscribe_delay: int = _opt(
        _int_at_least(0), 0, ">0: send the first SUBSCRIBE after a random 1..max seconds"
    )


def _path_or_empty(v: Any) -> str | None:
    return None if v == "" else _path(v)


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


_TRANSPORTS = ("udp", "tcp", "tls")


def _transports(v: Any) -> str | None:
    if (
        not isinstance(v, list | tuple)
        or not v
        or any(t not in _TRANSPORTS for t in v)
        or len(set(v)) != len(v)
    ):
        return f"must be a non-empty list of distinct 'udp', 'tcp', 'tls', got {v!r}"
    return None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """SIP over TLS: whom we trust, and the certificate we show."""

    ca_file: str = _opt(
        _path_or_empty, "", "PEM CAs that sign servers' certificates ('' : the system store)"
    )
    cert_file: str = _opt(
        _path_or_empty,
        "",
        "PEM certificate chain of the TLS listeners, also shown to servers that ask for one",
    )
    key_file: str = _opt(_path_or_empty, "", "its private key ('' : in cert_file)")
    verify_server: bool = _opt(
        _bool, True, "check the server's certificate against the CAs and the host name"
    )

    def __post_init__(self) -> None:
        if self.key_file and not self.cert_file:
            raise ConfigError("sip.tls.key_file: set without sip.tls.cert_file")


@dataclass(frozen=True, slots=True)
class SipSettings:
    """Where the shards' SIP sockets live and the RFC 3261 timer base values."""

    listen: tuple[str, ...] = _opt(
        lambda v: _host(v) if isinstance(v, str) else _hosts(v),
        ("127.0.0.1",),
        "address (or list of addresses, e.g. IPv4 and IPv6) the shard sockets bind to;"
        " the first is written in Via and Contact unless advertise says otherwise",
        convert=lambda v: (v,) if isinstance(v, str) else tuple(v),
    )
    port: int = _opt(_port, 5070, "UDP port of shard 0; shard i binds port + i")
    advertise: str = _opt(
        lambda v: None if v == "" else _host(v),
        "",
        "host written in Via and Contact when it differs from listen",
    )
    t1: float = _opt(_number_at_least(0.0, strict=True), 0.5, "RFC 3261 T1 in seconds")
    t2: float = _opt(_number_at_least(0.0, strict=True), 4.0, "RFC 3261 T2 in seconds")
    t4: float = _opt(_number_at_least(0.0, strict=True), 5.0, "RFC 3261 T4 in seconds")
    max_message_size: int = _opt(
        _int_at_least(1024), 65535, "largest SIP datagram accepted, in bytes"
    )
    subscribe_rate: float = _opt(
        _number_at_least(0.0),
        1000.0,
        "service-wide limit of out-of-dialog SUBSCRIBEs per second (0: no limit)",
    )
    user_agent: str = _opt(_string, "presence-b2b", "User-Agent header value ('' for none)")
    transports: tuple[str, ...] = _opt(
        _transports, ("udp", "tcp"), "transports the shards listen on and send over"
    )
    tls_port: int = _opt(_port, 5170, "TLS port of shard 0; shard i listens on tls_port + i")
    connect_timeout: float = _opt(
        _number_at_least(0.0, strict=True), 10.0, "seconds to open a TCP or TLS connection"
    )
    keepalive_interval: float = _opt(
        _number_at_least(0.0),
        30.0,
        "seconds between CRLF keep-alive pings on our TCP/TLS connections (0: none)",
    )
    tls: TlsSettings = field(
        default_factory=TlsSettings,
        metadata={"table": TlsSettings, "check": None, "doc": "SIP over TLS"},
    )

    def __post_init__(self) -> None:
        if "tls" in self.transports and not self.tls.cert_file:
            raise ConfigError(
                "sip.tls.cert_file: needed when sip.transports has 'tls'"
                " (the TLS listeners' certificate)"
            )


def _default_runtime_dir() -> str:
    return os.environ.get("RUNTIME_DIRECTORY", "/run/presence-b2b").split(":")[0]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The supervisor: shard count, the control socket and who may use it."""

    shards: int = _opt(_int_at_least(0), 0, "number of shard processes (0: one per CPU core)")
    control_socket: str = _opt(
        lambda v: None if v == "" else _path(v),
        "",
        "QSA control socket path ('' : <runtime dir>/qsa.sock)",
    )
    allowed_uids: tuple[int, ...] = _opt(
        _id_list, (), "uids allowed on the control socket besides root and the service's own"
    )
    allowed_gids: tuple[int, ...] = _opt(
        _group_list,
        (),
        "groups (names or gids) whose members may use the control socket",
        _group_ids,
    )
    admin_gids: tuple[int, ...] = _opt(
        _group_list,
        (),
        "groups (names or gids) allowed admin commands besides root and the service user",
        _group_ids,
    )
    max_subscriptions_per_client: int = _opt(
        _int_at_least(0), 100_000, "refuse a client's subscriptions beyond this many (0: no limit)"
    )
    max_clients_per_uid: int = _opt(
        _int_at_least(0), 256, "connected clients one uid may hold of the 1024 (0: no share)"
    )
    max_handshakes_per_uid: int = _opt(
        _int_at_least(0), 16, "connections one uid may have in handshake of the 64 (0: no share)"
    )
    max_admin_sessions_per_uid: int = _opt(
        _int_at_least(0), 4, "admin connections one uid may hold of the 16 (0: no share)"
    )
    shard_memory_limit_bytes: int = _opt(
        _int_at_least(0), 0, "restart a shard whose RSS exceeds this (0: no limit)"
    )
    request_ring_bytes: int = _opt(
        _power_of_two(4096), 1 << 20, "size of each client's request ring"
    )
    status_ring_bytes: int = _opt(
        _power_of_two(4096), 4 << 20, "size of each client's status ring per shard"
    )
    log_level: str = _opt(_log_level, "info", "debug, info, warning or error")

    def control_socket_path(self) -> str:
        return self.control_socket or os.path.join(_default_runtime_dir(), "qsa.sock")

    def shard_count(self) -> int:
        return self.shards or (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The Prometheus scrape endpoint of the supervisor."""

    listen: str = _opt(
        lambda v: None if v == "" else _host_port(v),
        "127.0.0.1:9478",
        "host:port of the scrape endpoint ('' disables it)",
    )


def _credentials_file(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"must be a string, got {v!r}"
    if v and not v.startswith("/") and "/" in v:
        return f"must be an absolute path or a bare name in $CREDENTIALS_DIRECTORY, got {v!r}"
    return None


def _store_url(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"must be a string, got {v!r}"
    if v and not (
        (v.startswith("sqlite:///") and len(v) > len("sqlite:///"))
        or v.startswith(("postgresql://", "postgres://"))
    ):
        return f"must be '', 'sqlite:////abs/path.db' or 'postgresql://...', got {v!r}"
    return None


def _node_name(v: Any) -> str | None:
    if not isinstance(v, str) or (v and not v.replace("-", "").replace(".", "").replace(
        "_", ""
    ).isalnum()):
        return f"must be a host-name-like token (letters, digits, . - _), got {v!r}"
    return None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Digest authentication: where the subscribers' credentials are. The file
    itself is checked by presence_b2b.credentials, at check-config and at start."""

    credentials_file: str = _opt(
        _credentials_file,
        "",
        "TOML file of [[credential]] tables; a bare name is read from"
        " $CREDENTIALS_DIRECTORY ('' : no credentials, challenges fail)",
    )


def _dns_servers(v: Any) -> str | None:
    if not isinstance(v, list | tuple):
        return f"must be a list of 'ip' or 'ip:port' strings, got {v!r}"
    for server in v:
        if not isinstance(server, str):
            return f"must be a list of 'ip' or 'ip:port' strings, got {server!r}"
        if dns_server_address(server) is None:
            return f"must be 'ip' or 'ip:port' such as '10.0.0.53:53', got {server!r}"
    return None


def dns_server_address(text: str) -> tuple[str, int] | None:
    """``ip``, ``ip:port``, ``[v6]`` or ``[v6]:port`` as (ip, port); None if malformed."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """Where the shards send their RFC 3263 look-ups and how long they wait."""

    servers: tuple[str, ...] = _opt(
        _dns_servers, (), "DNS servers as 'ip' or 'ip:port' (empty: the system's resolv.conf)"
    )
    timeout: float = _opt(
        _number_at_least(0.0, strict=True), 2.0, "seconds to wait for each attempt of a look-up"
    )
    attempts: int = _opt(
        _int_at_least(1), 2, "tries of a look-up; a look-up fails after timeout x attempts"
    )
    cache_size: int = _opt(
        _int_at_least(0), 10_000, "DNS answers each shard keeps (0: no cache)"
    )


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Durable dialogs: where they are kept, and the leases of a shared store."""

    url: str = _opt(
        _store_url,
        "sqlite:////var/lib/presence-b2b/dialogs.db",
        "where dialogs are kept: sqlite:////path, postgresql://... ('' : nowhere)",
    )
    node: str = _opt(_node_name, "", "this host's name in a shared store ('' : the host name)")
    lease_seconds: float = _opt(
        _number_at_least(1.0), 10.0, "lease of a virtual partition in a shared store, seconds"
    )
    reattach_grace: float = _opt(
        _number_at_least(0.0),
        60.0,
        "seconds a restored dialog waits for its client to subscribe again before it ends",
    )
    batch_interval_ms: int = _opt(
        _int_at_least(0), 200, "routine changes are written at most this many ms late"
    )

    def node_name(self) -> str:
        return self.node or socket.gethostname()


@dataclass(frozen=True, slots=True)
class Config:
    presence_b2b: B2BParams = field(default_factory=B2BParams)
    sip: SipSettings = field(default_factory=SipSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    store: StoreSettings = field(default_factory=StoreSettings)


_SECTIONS: dict[str, type[Any]] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in dataclasses.fields(Config)
}


def _build_section(name: str, cls: type[Any], table: Any) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{name}: must be a table, got {table!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        f = known.get(key)
        if f is None:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
        if "table" in f.metadata:  # a sub-table such as [sip.tls]
            values[key] = _build_section(f"{name}.{key}", f.metadata["table"], value)
            continue
        problem = f.metadata["check"](value)
        if problem:
            raise ConfigError(f"{name}.{key}: {problem}")
        convert = f.metadata["convert"]
        values[key] = convert(value) if convert is not None else _coerce(f.type, value)
    section = cls(**values)
    _check_section(name, section)
    return section


def _coerce(declared: Any, value: Any) -> Any:
    """TOML gives ints for floats, bools for 0/1 flags and lists for tuples."""
    if declared in ("float", float) and isinstance(value, int):
        return float(value)
    if declared in ("int", int) and isinstance(value, bool):
        return int(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_section(name: str, section: Any) -> None:
    """Rules that tie two keys of one table together."""
    if isinstance(section, SipSettings) and section.t2 < section.t1:
            raise ConfigError(f"{name}.t2: must be >= t1 ({section.t1}), got {section.t2}")


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from parsed TOML; raises ConfigError naming the bad key."""
    sections: dict[str, Any] = {}
    for name, table in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{name}: unknown table (known: {', '.join(sorted(_SECTIONS))})")
        sections[name] = _build_section(name, cls, table)
    config = Config(**sections)
    last_port = config.sip.port + config.server.shard_count() - 1
    if last_port > 65535:
        raise ConfigError(
            f"sip.port: shard {config.server.shard_count() - 1} would bind port {last_port}"
        )
    return config


def load(path: str | Path | None) -> Config:
    """Read and validate the TOML file at ``path``; None gives the built-in defaults."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return from_mapping(data)


def describe() -> list[tuple[str, Any, str]]:
    """Every key with its default and meaning, for docs and ``check-config --defaults``."""
    rows: list[tuple[str, Any, str]] = []
    for name, cls in _SECTIONS.items():
        rows.extend(_describe_table(name, cls))
    return rows


def _describe_table(name: str, cls: type[Any]) -> list[tuple[str, Any, str]]:
    """A table's own keys first, then its sub-tables' (TOML wants them in that order)."""
    rows: list[tuple[str, Any, str]] = []
    tables: list[tuple[str, Any, str]] = []
    for f in dataclasses.fields(cls):
        if "table" in f.metadata:
            tables.extend(_describe_table(f"{name}.{f.name}", f.metadata["table"]))
            continue
        default = f.default
        if default is dataclasses.MISSING:
            default = f.default_factory()  # type: ignore[operator]
        rows.append((f"{name}.{f.name}", default, f.metadata["doc"]))
    return rows + tables
