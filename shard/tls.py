"""TLS contexts for SIP over TLS, and what a TLS failure is called.

Kept apart from the connection pool so that the policy (TLS 1.2 at least, the
server certificate checked against the CA and the host name) is in one place and
the pool only uses the contexts.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

__all__ = ["TlsFailure", "classify_tls_error", "client_context", "server_context"]


def client_context(
    *, ca_file: str = "", cert_file: str = "", key_file: str = "", verify_server: bool = True
) -> ssl.SSLContext:
    """The context of every TLS connection we open.

    The server's certificate is verified against `ca_file` (the system store when
    empty) and the name we connect to (SNI; RFC 5922: the host of a sips: URI)
    unless `verify_server` is off. `cert_file`/`key_file` give a client certificate
    for servers that ask for one. Raises OSError or ssl.SSLError on unreadable files:
    a configuration error that must stop the start, not a connection failure.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify_server:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    return ctx


def server_context(*, cert_file: str, key_file: str = "") -> ssl.SSLContext:
    """The context of the TLS listeners: our certificate; peers are not asked for one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file or None)
    return ctx


@dataclass(frozen=True, slots=True)
class TlsFailure:
    """`what` is "certificate" when the peer's certificate was refused, "handshake"
    for any other TLS error; `reason` is the TLS library's own words."""

    what: str
    reason: str


def classify_tls_error(exc: BaseException) -> TlsFailure | None:
    """Name a TLS failure, or None when `exc` is not one (refused, timeout, reset)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return TlsFailure("certificate", f"certificate verify failed: {detail}")
    if isinstance(exc, ssl.SSLError):
        return TlsFailure("handshake", exc.reason or str(exc))
    return None
