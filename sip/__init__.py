"""Sans-I/O SIP core: messages, transactions and dialogs driven by method calls and
an injected clock. Sockets and timers belong to the layer above."""

from .dialog import Dialog, build_initial_request, next_hop, parse_route_set, resolve_uri
from .message import Message, Request, Response, SipParseError, parse_message, require
from .transaction import (
    ClientTransaction,
    Deliver,
    Retransmit,
    Send,
    Terminated,
    TimedOut,
    TimerSettings,
    TransactionState,
    TransactionTable,
    TransportError,
    make_response,
)

__all__ = [
    "ClientTransaction",
    "Deliver",
    "Dialog",
    "Message",
    "Request",
    "Response",
    "Retransmit",
    "Send",
    "SipParseError",
    "Terminated",
    "TimedOut",
    "TimerSettings",
    "TransactionState",
    "TransactionTable",
    "TransportError",
    "build_initial_request",
    "make_response",
    "next_hop",
    "parse_message",
    "parse_route_set",
    "require",
    "resolve_uri",
]
