"""What a consumer is told about one subscription: a status or a failure.

These two structs are the payload of the QSA status ring (see
``docs/qsa-protocol.md``) and the output of the shard engine. ``id`` is the
consumer's subscription id on the wire; inside a shard it is the dialog id,
and the shard rewrites it for each consumer it fans out to.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from .document import Presentity
from .packages import PackageDocument
from .resourcelist import ResourceList

#: What a status carries besides PIDF: another package's document, or a resource
#: list's per-resource states. Tagged (``"type"`` key) so one field holds them all.
Document = PackageDocument | ResourceList


class SubscriptionState(StrEnum):
    """RFC 6665 Subscription-State values as a consumer sees them."""

    ACTIVE = "active"
    PENDING = "pending"
    TERMINATED = "terminated"


class Status(msgspec.Struct, tag="status", frozen=True, gc=False, omit_defaults=True):
    """One NOTIFY's worth of presence, or a state change the service itself decided.

    ``reason`` is the Subscription-State reason from the notifier (``timeout``,
    ``rejected``...), or one of the service's own: ``unsubscribed`` (the consumer
    asked), ``reestablishing`` (a shard restarted and the dialog is being set up
    again), ``shutdown``. ``presentity`` is None when the body is empty or not
    PIDF; then ``error`` says why when there was a body. The raw ``body`` and its
    ``content_type`` always travel so nothing is lost. ``merged`` counts older
    statuses of this subscription that were dropped in favour of this one while
    the consumer's ring was full (status is state, not events).

    ``document`` is the parsed body of any other event package (dialog-info,
    reginfo, message-summary, watcherinfo) or, for a list subscription, the
    resource list's states; it comes last and is left out when None, so a
    presence status encodes exactly as before and a decoder that does not know
    the field skips it.

    ``list`` and ``resource`` are set on the statuses of a resource list
    subscription (RFC 4662): one status per resource instance, where ``state``
    and ``reason`` are the instance's (``pending`` for a resource with no
    instance yet; ``terminated`` with reason ``removed`` for one the list no
    longer has) and the body fields are the resource's part. A status with
    ``list`` and no ``resource`` speaks of the list as a whole (its dialog ended,
    or its body could not be read). Both are left out when empty, like
    ``document``.
    """

    id: int
    state: SubscriptionState
    reason: str = ""
    presentity: Presentity | None = None
    content_type: str = ""
    body: bytes = b""
    error: str = ""
    merged: int = 0
    document: Document | None = None
    list: str = ""
    resource: str = ""


class FailureKind(StrEnum):
    """Why a subscription is not (or no longer) delivering statuses."""

    SIP_ERROR = "sip-error"  # a final error response to SUBSCRIBE
    TIMEOUT = "timeout"  # no response to SUBSCRIBE (transaction timeout)
    NO_NOTIFY = "no-notify"  # a 2xx but no NOTIFY within 64*T1
    TERMINATED = "terminated"  # the notifier ended it (Subscription-State: terminated)
    TRANSPORT = "transport"  # the request could not be sent
    REFUSED = "refused"  # the service will not handle it (config, limits, bad request)
    DNS = "dns"  # the target's name did not resolve (NXDOMAIN, SERVFAIL, timeout)
    TLS = "tls"  # the TLS handshake or the server certificate failed
    AUTH = "auth"  # a challenge could not be answered, or the credentials were refused
    INTERNAL = "internal"  # a bug met while handling this subscription; it is retried
    TOO_LARGE = "too-large"  # a document over the service's limits


class Failure(msgspec.Struct, tag="error", frozen=True, gc=False, omit_defaults=True):
    """A failure of one subscription. ``retry_in`` is the seconds until the service
    tries again on its own; None means final: the subscription is over and the
    consumer will get nothing more for this id."""

    id: int
    kind: FailureKind
    code: int = 0
    detail: str = ""
    retry_in: float | None = None


#: Everything a consumer is told about a subscription: one name for the union, so
#: the status ring, the shard's fan-out and the client library agree on it.
StatusMessage = Status | Failure
