"""The vocabulary between the resolver and whatever performs its DNS look-ups.

The resolver asks for a `Query` (a name and a record type) and is given back an
`Answer`: records with a TTL, or a DNS outcome that carries none (NXDOMAIN,
SERVFAIL, a timeout, ...). Plain values only, so the resolver can be driven by
tests with made-up answers and by the asyncio adapter with real ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .destination import normalise_name


class RdType(StrEnum):
    """The record types RFC 3263 needs."""

    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


class DnsStatus(StrEnum):
    """What a look-up came to."""

    OK = "ok"  # records of the type asked for
    NODATA = "nodata"  # the name exists, but has no record of that type
    NXDOMAIN = "nxdomain"  # the name does not exist
    SERVFAIL = "servfail"  # the server could not answer (upstream failure, DNSSEC, ...)
    REFUSED = "refused"  # the server will not answer for this name
    TIMEOUT = "timeout"  # no answer within the configured timeout and attempts
    ERROR = "error"  # anything else: malformed answer, no usable server, bad name

    @property
    def negative(self) -> bool:
        """The DNS says there is nothing (RFC 2308): cacheable for the negative TTL."""
        return self in (DnsStatus.NODATA, DnsStatus.NXDOMAIN)

    @property
    def metric_result(self) -> str:
        """The ``result`` label of ``dns_lookups_total``: server errors are one value."""
        if self in (DnsStatus.SERVFAIL, DnsStatus.REFUSED):
            return DnsStatus.ERROR.value
        return self.value


@dataclass(frozen=True, slots=True)
class Query:
    """One look-up: ``name`` is normalised (lower case, no trailing dot)."""

    name: str
    rdtype: RdType

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalise_name(self.name))

    def __str__(self) -> str:
        return f"{self.rdtype} {self.name}"


@dataclass(frozen=True, slots=True)
class Naptr:
    """A NAPTR record (RFC 3403) as RFC 3263 uses it."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    """An SRV record (RFC 2782); ``target`` "." means the service is not offered."""

    priority: int
    weight: int
    port: int
    target: str


Record = Naptr | Srv | str  # an A or AAAA record is its address text


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of one `Query`.

    ``ttl`` is the smallest TTL of the records, or for a negative answer the
    SOA's negative TTL (RFC 2308 §5); None when the server gave none, and the
    resolver's policy decides. ``records`` is empty unless ``status`` is OK.
    """

    query: Query
    status: DnsStatus
    records: tuple[Record, ...] = ()
    ttl: float | None = None
