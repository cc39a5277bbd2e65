"""The complete, static catalogue of the service's metric families.

Everything the scrape endpoint can ever show is declared here, label values
included. Two things follow from that: the shared-memory slot layout of every
process (one slot per series, see :mod:`.block`) is fixed at import time, and a
label value that is not listed is refused when a caller binds it, long before
it could blow up the cardinality of the time-series database. A URI, Call-ID,
pid or any other free-form value can never become a label. The timer kinds and
subscription states are the state machine's own enums, so a new state or timer
cannot be forgotten here.

Every series carries one more label, ``shard``, added by the collector:
``"0"`` .. ``"N-1"`` for the shard processes and ``"supervisor"``; it is
bounded by the configured shard count.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from ..shard.subscription import State, TimerKind

__all__ = [
    "AUTH_ALGORITHMS",
    "AUTH_FAILURE_REASONS",
    "BY_NAME",
    "CATALOG",
    "DNS_RDTYPES",
    "DNS_RESULTS",
    "PREFIX",
    "RESERVED_LABELS",
    "RING_DIRECTIONS",
    "SHARD_LABEL",
    "SUBSCRIPTION_STATES",
    "SUPERVISOR",
    "TIMER_KINDS",
    "TRANSACTION_TIMER",
    "Family",
    "Label",
    "MetricType",
    "Scope",
    "sample_names",
    "state_label",
]

PREFIX = "presence_b2b_"
#: The label the collector adds to every series: which process it comes from.
SHARD_LABEL = "shard"
#: The ``shard`` label value of the supervisor process.
SUPERVISOR = "supervisor"
#: Label names a family may not declare: the collector or Prometheus owns them.
RESERVED_LABELS = frozenset({SHARD_LABEL, "le", "quantile", "job", "instance"})

MetricType = Literal["counter", "gauge", "histogram"]
#: Which processes report a family: shards, the supervisor, or both.
Scope = Literal["shard", "supervisor", "both"]
#: Where the value comes from: the process's shared-memory block, or psutil.
Source = Literal["block", "process"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$")
_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class Label:
    """A label name and every value it may take."""

    name: str
    values: tuple[str, ...]

    def index(self, value: str) -> int:
        """Position of ``value``; ValueError naming the label when it is not allowed."""
        try:
            return self.values.index(value)
        except ValueError:
            raise ValueError(
                f"label {self.name!r} does not allow {value!r}"
                f" (allowed: {', '.join(self.values)})"
            ) from None


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: name (without prefix), type, help and bounded labels."""

    name: str
    type: MetricType
    help: str
    labels: tuple[Label, ...] = ()
    #: Histogram upper bounds in ascending order, without +Inf.
    buckets: tuple[float, ...] = ()
    scope: Scope = "shard"
    source: Source = "block"
    #: Set for gauges the supervisor writes into a shard's block (shard_up);
    #: they survive :meth:`MetricsBlock.reset_gauges`.
    supervisor_owned: bool = False
    label_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_names", tuple(lb.name for lb in self.labels))

    @property
    def full_name(self) -> str:
        return PREFIX + self.name

    @property
    def attr(self) -> str:
        """Attribute name on :class:`ShardMetrics`: the name without ``_total``."""
        return self.name.removesuffix("_total")

    @property
    def slots_per_series(self) -> int:
        """Counter and gauge: one value. Histogram: each bucket, +Inf, then the sum."""
        return len(self.buckets) + 2 if self.type == "histogram" else 1

    def series(self) -> Iterator[tuple[str, ...]]:
        """Every allowed combination of label values, in slot order."""
        return itertools.product(*(lb.values for lb in self.labels))

    @property
    def series_count(self) -> int:
        n = 1
        for lb in self.labels:
            n *= len(lb.values)
        return n

    def reported_by(self, shard: str) -> bool:
        """Whether the process with this ``shard`` label value reports the family."""
        if self.scope == "both":
            return True
        return (self.scope == "supervisor") == (shard == SUPERVISOR)


def _check(family: Family) -> None:
    """Naming rules of Prometheus, enforced once at import so a typo cannot ship."""
    name = family.name
    if not _NAME.match(name) or "__" in name:
        raise ValueError(f"{name}: not a snake_case metric name")
    if (family.type == "counter") != name.endswith("_total"):
        raise ValueError(f"{name}: counters and only counters end in _total")
    if family.type == "histogram":
        if not family.buckets or list(family.buckets) != sorted(set(family.buckets)):
            raise ValueError(f"{name}: histogram buckets must be strictly ascending")
    elif family.buckets:
        raise ValueError(f"{name}: only histograms have buckets")
    if family.source == "process" and family.labels:
        raise ValueError(f"{name}: process figures carry only the shard label")
    seen: set[str] = set()
    for lb in family.labels:
        if lb.name in RESERVED_LABELS or not _NAME.match(lb.name) or lb.name in seen:
            raise ValueError(f"{name}: bad or duplicate label name {lb.name!r}")
        seen.add(lb.name)
        if not lb.values or len(set(lb.values)) != len(lb.values):
            raise ValueError(f"{name}: label {lb.name!r} needs distinct values")
        for v in lb.values:
            if not _VALUE.match(v):
                raise ValueError(f"{name}: label {lb.name!r} value {v!r} is not a plain token")


#: The timer kind of the SIP transaction timers, which the engine runs in the same
#: queue as the subscriptions' own deadlines.
TRANSACTION_TIMER = "transaction"
TIMER_KINDS = Label("kind", (*(kind.value for kind in TimerKind), TRANSACTION_TIMER))


def state_label(state: State) -> str:
    """The ``state`` label value of a subscription state: its name in lower case."""
    return state.name.lower()


SUBSCRIPTION_STATES = Label("state", tuple(state_label(state) for state in State))
#: Ring directions: request (client -> supervisor), status (shard -> client),
#: command (supervisor -> shard), event (shard -> supervisor).
RING_DIRECTIONS = Label("direction", ("request", "status", "command", "event"))
RESPONSE_CODES_RECEIVED = (
    "200", "202", "302", "401", "403", "404", "407", "408",
    "423", "480", "481", "489", "500", "503", "other",
)
RESPONSE_CODES_SENT = ("200", "400", "481", "500", "other")
#: Digest algorithms a challenge can be answered with (sip.digest.ALGORITHMS).
AUTH_ALGORITHMS = Label(
    "algorithm",
    ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess", "other"),
)
#: Why a challenge was not answered (shard.auth.RefusalReason).
AUTH_FAILURE_REASONS = Label(
    "reason",
    (
        "no-challenge", "malformed-challenge", "no-credential", "unsupported-algorithm",
        "nonce-rechallenged", "stale-again", "credentials-rejected",
    ),
)
#: Record types the resolver asks for, and what a look-up came to
#: (presence_b2b.shard.dns_answer.RdType and DnsStatus.metric_result): SERVFAIL,
#: REFUSED and anything else the server got wrong are "error", which keeps the
#: family within 20 series.
DNS_RDTYPES = Label("type", ("NAPTR", "SRV", "A", "AAAA"))
DNS_RESULTS = Label("result", ("ok", "nodata", "nxdomain", "timeout", "error"))

#: Stream transports (UDP has no connections) and who opened the connection.
#: Event packages counted by name; any other token counts as ``other``.
EVENT_PACKAGES = (
    "presence", "dialog", "reg", "message-summary", "presence.winfo", "other"
)
STREAM_TRANSPORTS = Label("transport", ("tcp", "tls"))
CONNECTION_DIRECTIONS = Label("direction", ("outbound", "inbound"))
#: Why a connection failed: connect refused or unreachable, connect timeout, TLS,
#: no pong to a keep-alive, a stream that could not be framed, reset by the peer.
CONNECTION_FAILURES = ("connect", "timeout", "tls", "keepalive", "framing", "reset")

#: Seconds late a timer fires: the event loop's health at a glance.
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: NOTIFY datagram in to status record in the client's ring: tens of microseconds
#: when healthy, milliseconds under load.
_DELIVERY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)

#: A DNS answer: well under a millisecond from a local cache, tens of milliseconds
#: across the Internet, seconds when a server does not answer.
_DNS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: One batch of dialog changes, from taking it out of the buffer to the commit:
#: a millisecond or two on a local SQLite file, more across a network.
_STORE_BATCH_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)

CATALOG: tuple[Family, ...] = (
    # ---- timers -------------------------------------------------------------
    Family(
        "timers_armed_total", "counter", "Timers armed, by what they are for.",
        (TIMER_KINDS,),
    ),
    Family(
        "timers_fired_total", "counter", "Timers that fired (not cancelled), by kind.",
        (TIMER_KINDS,),
    ),
    Family(
        "timer_lag_seconds", "histogram",
        "How late a timer fired after its deadline; grows when the event loop is overloaded.",
        buckets=_LAG_BUCKETS,
    ),
    Family(
        "gc_pause_seconds", "histogram",
        "How long one collection of Python's garbage collector stopped the shard, by the"
        " oldest generation it collected (2: the whole heap not frozen).",
        (Label("generation", ("0", "1", "2")),),
        buckets=_LAG_BUCKETS,
    ),
    # ---- SIP ----------------------------------------------------------------
    Family(
        "sip_requests_sent_total", "counter",
        "SIP requests sent, by method and purpose; retransmission counts each resend.",
        (
            Label("method", ("SUBSCRIBE",)),
            Label("kind", ("initial", "refresh", "unsubscribe", "retransmission")),
        ),
    ),
    Family(
        "sip_responses_received_total", "counter",
        "Final and provisional SIP responses received, by class.",
        (Label("class", ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")),),
    ),
    Family(
        "sip_responses_received_by_code_total", "counter",
        "SIP responses received for the codes an operator acts on; the rest are 'other'.",
        (Label("code", RESPONSE_CODES_RECEIVED),),
    ),
    Family(
        "sip_transaction_timeouts_total", "counter",
        "Client transactions that ended in timer F (no final response).",
    ),
    Family(
        "sip_retransmissions_total", "counter",
        "Retransmissions: requests resent by us, duplicate requests absorbed from peers.",
        (Label("direction", ("sent", "received")),),
    ),
    Family(
        "sip_notify_received_total", "counter",
        "NOTIFY requests received (retransmissions excluded), by Subscription-State.",
        (Label("state", ("active", "pending", "terminated", "other")),),
    ),
    Family(
        "sip_notify_by_package_total", "counter",
        "NOTIFY requests received (retransmissions excluded), by event package and whether"
        " they matched one of our dialogs (unmatched ones get 481: message-summary servers"
        " send them unasked).",
        (Label("package", EVENT_PACKAGES), Label("dialog", ("matched", "unmatched"))),
    ),
    Family(
        "list_refreshes_total", "counter",
        "Refreshes sent to get a resource list's full state again (RFC 4662): a gap in"
        " its version, a partial state before any full one, or a body that did not read.",
    ),
    Family(
        "sip_responses_sent_total", "counter", "SIP responses sent, by code.",
        (Label("code", RESPONSE_CODES_SENT),),
    ),
    Family(
        "sip_parse_errors_total", "counter",
        "Datagrams dropped because they did not parse, by what was wrong.",
        (
            Label(
                "kind",
                ("too-large", "start-line", "header", "missing-header", "body", "other"),
            ),
        ),
    ),
    # ---- TCP/TLS connections (shard/connections.py) ---------------------------
    Family(
        "sip_connections", "gauge", "TCP and TLS connections open now, ours and the peers'.",
        (STREAM_TRANSPORTS, CONNECTION_DIRECTIONS),
    ),
    Family(
        "sip_connections_opened_total", "counter",
        "TCP and TLS connections established (TLS: handshake done).",
        (STREAM_TRANSPORTS, CONNECTION_DIRECTIONS),
    ),
    Family(
        "sip_connections_failed_total", "counter",
        "Connections that could not be opened or ended on an error, by why.",
        (STREAM_TRANSPORTS, Label("reason", CONNECTION_FAILURES)),
    ),
    Family(
        "sip_tls_handshake_failures_total", "counter",
        "TLS handshakes of our connections that failed: the server's certificate refused,"
        " or the handshake itself.",
        (Label("reason", ("certificate", "handshake")),),
    ),
    # ---- subscriptions --------------------------------------------------------
    Family(
        "subscriptions", "gauge", "Subscriptions by state-machine state.",
        (SUBSCRIPTION_STATES,),
    ),
    Family(
        "subscriptions_established_total", "counter",
        "Subscriptions that reached the confirmed state (first 2xx and NOTIFY).",
    ),
    Family(
        "subscriptions_failed_total", "counter",
        "Subscription attempts that failed and were scheduled for retry or given up.",
        (
            Label(
                "kind",
                (
                    "sip-error", "timeout", "no-notify", "terminated", "transport", "refused",
                    "dns", "tls", "auth", "internal", "too-large",
                ),
            ),
        ),
    ),
    Family(
        "subscriptions_terminated_total", "counter",
        "Subscriptions that ended, by Subscription-State reason or local cause.",
        (
            Label(
                "reason",
                (
                    "deactivated", "probation", "rejected", "timeout", "giveup",
                    "noresource", "invariant", "unsubscribed", "other",
                ),
            ),
        ),
    ),
    Family("dialogs", "gauge", "SIP dialogs kept (one per distinct record and subscriber)."),
    Family(
        "dialogs_resting", "gauge",
        "Subscriptions kept packed: confirmed, and quiet for longer than any transaction lives.",
    ),
    Family(
        "dialogs_by_call_id", "gauge",
        "Dialogs matched by their whole Call-ID because it names no dialog id of theirs"
        " (restored under another id, or adopted from another host); near 0 normally.",
    ),
    Family(
        "subscribers", "gauge",
        "Client subscriptions attached to those dialogs; above dialogs when clients share.",
    ),
    Family(
        "notify_to_client_seconds", "histogram",
        "Time from a NOTIFY datagram arriving to its status record written to the client ring.",
        buckets=_DELIVERY_BUCKETS,
    ),
    # ---- digest authentication ------------------------------------------------
    Family(
        "auth_challenges_total", "counter",
        "401/407 challenges answered, by response code and the algorithm chosen.",
        (Label("code", ("401", "407")), AUTH_ALGORITHMS),
    ),
    Family(
        "auth_stale_nonces_total", "counter",
        "Challenges with stale=true answered with the new nonce (not failures).",
    ),
    Family(
        "auth_nonce_reuses_total", "counter",
        "Requests sent with a realm's cached nonce and the next nonce count, no challenge.",
    ),
    Family(
        "auth_failures_total", "counter",
        "Challenges not answered or credentials refused, by reason; each is an auth failure.",
        (AUTH_FAILURE_REASONS,),
    ),
    # ---- DNS (RFC 3263 resolution) --------------------------------------------
    Family(
        "dns_lookups_total", "counter",
        "DNS look-ups sent to the servers (cache misses), by record type and result.",
        (DNS_RDTYPES, DNS_RESULTS),
    ),
    Family(
        "dns_lookup_seconds", "histogram",
        "Time from a DNS look-up's start to its answer (or its timeout).",
        buckets=_DNS_BUCKETS,
    ),
    Family(
        "dns_cache_lookups_total", "counter",
        "Records a resolution needed, by where they came from: the cache (a positive or a"
        " negative answer), a new look-up (miss), or a look-up already under way (joined).",
        (Label("result", ("hit", "negative-hit", "miss", "joined")),),
    ),
    # ---- errors -------------------------------------------------------------
    Family(
        "errors_total", "counter", "Errors by kind.",
        (
            Label(
                "kind",
                (
                    "parse", "pidf", "body", "list", "transport", "internal", "unanswered",
                    "ring_overflow", "ring_merge", "bad_client_record",
                ),
            ),
        ),
        scope="both",
    ),
    # ---- QSA (local clients) ------------------------------------------------
    Family("qsa_clients", "gauge", "Local clients connected.", scope="supervisor"),
    Family(
        "qsa_connections_refused_total", "counter",
        "Control-socket connections refused (peer credentials not allowed, limits).",
        scope="supervisor",
    ),
    Family(
        "qsa_requests_total", "counter", "QSA requests taken from the clients' request rings.",
        (Label("op", ("subscribe", "unsubscribe", "other")),),
        scope="supervisor",
    ),
    Family(
        "qsa_request_pauses_total", "counter",
        "Times a client's request ring was left unread because its shard had too much queued.",
        scope="supervisor",
    ),
    Family(
        "qsa_status_sent_total", "counter", "Status records written to clients' status rings.",
    ),
    Family(
        "qsa_ring_depth_bytes", "gauge",
        "Bytes waiting in this process's rings of one direction, summed over the rings.",
        (RING_DIRECTIONS,),
        scope="both",
    ),
    Family(
        "qsa_ring_high_water_bytes", "gauge",
        "Deepest any single ring of one direction has been since the process started.",
        (RING_DIRECTIONS,),
        scope="both",
    ),
    Family(
        "qsa_status_merges_total", "counter",
        "Statuses replaced by a newer one for the same subscription while the ring was full.",
    ),
    Family(
        "sip_subscribe_pace", "gauge",
        "Out-of-dialog SUBSCRIBEs per second the shard allows itself now: its share of "
        "sip.subscribe_rate, cut on congestion and grown back (0: no limit).",
    ),
    # ---- dialog store ---------------------------------------------------------
    Family(
        "store_rows_written_total", "counter",
        "Dialog rows written to the store, by how: in a batch or before acting (synchronous).",
        (Label("mode", ("batched", "synchronous")),),
    ),
    Family(
        "store_batch_seconds", "histogram",
        "Time to write one batch of dialog changes, off the event loop.",
        buckets=_STORE_BATCH_BUCKETS,
    ),
    Family(
        "store_errors_total", "counter",
        "Store operations that failed: the database was unreachable or a write was fenced off.",
        (Label("kind", ("unavailable", "refused")),),
    ),
    Family(
        "store_dialogs_total", "counter",
        "Dialogs taken from the store, and restored dialogs ended for want of a client.",
        (Label("event", ("restored", "adopted", "dropped")),),
    ),
    Family(
        "store_partitions_held", "gauge",
        "Virtual partitions of the shared store this node holds (1024 on SQLite).",
    ),
    Family(
        "store_partitions_lost_total", "counter",
        "Virtual partitions lost: the lease lapsed or another node claimed it.",
    ),
    # ---- processes ------------------------------------------------------------
    Family(
        "shard_restarts_total", "counter", "Times the supervisor restarted this shard.",
        supervisor_owned=True,
    ),
    Family(
        "shard_up", "gauge", "1 while the shard process runs, 0 between death and restart.",
        supervisor_owned=True,
    ),
    Family(
        "shard_start_failures_total", "counter",
        "Times the supervisor could not start this shard (no fds, no memory); it retries.",
        supervisor_owned=True,
    ),
    Family(
        "process_cpu_seconds_total", "counter", "User and system CPU time of the process.",
        scope="both", source="process",
    ),
    Family(
        "process_resident_memory_bytes", "gauge", "Resident set size of the process.",
        scope="both", source="process",
    ),
    Family(
        "process_open_fds", "gauge", "Open file descriptors of the process.",
        scope="both", source="process",
    ),
)

for _family in CATALOG:
    _check(_family)

BY_NAME: dict[str, Family] = {f.name: f for f in CATALOG}
if len(BY_NAME) != len(CATALOG) or len({f.attr for f in CATALOG}) != len(CATALOG):
    raise ValueError("duplicate metric family in the catalogue")


def sample_names() -> frozenset[str]:
    """Every sample name the endpoint can expose, for checking dashboards and rules."""
    names: set[str] = set()
    for f in CATALOG:
        if f.type == "histogram":
            names.update(f.full_name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(f.full_name)
    return frozenset(names)
