"""What a final response to one of our SUBSCRIBEs tells the state machine.

Numbers that do not parse count as missing (the machine then uses its
defaults); a 3xx's contacts are filtered and ordered here, so the machine only
ever sees SIP/SIPS URIs in the order to try them.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..sip.headers import parse_delta_seconds, parse_name_addr, parse_retry_after, parse_uri
from ..sip.message import Response, SipParseError
from .output import valid_text
from .subscription import ResponseInfo

__all__ = ["redirect_contacts", "response_info"]


def response_info(resp: Response, txn: int) -> ResponseInfo:
    """The machine's view of ``resp``, the answer to its request number ``txn``."""
    return ResponseInfo(
        code=resp.status,
        reason=valid_text(resp.reason),
        expires=_int_header(resp, "Expires"),
        min_expires=_int_header(resp, "Min-Expires"),
        retry_after=_retry_after(resp),
        contacts=redirect_contacts(resp) if 300 <= resp.status < 400 else (),
        txn=txn,
    )


def _int_header(msg: Response, name: str) -> int | None:
    value = msg.get(name)
    if value is None:
        return None
    try:
        return parse_delta_seconds(value)
    except SipParseError:
        return None  # an invalid value counts as a missing one (the original read garbage)


def _retry_after(msg: Response) -> int | None:
    value = msg.get("Retry-After")
    if value is None:
        return None
    try:
        return parse_retry_after(value).seconds
    except SipParseError:
        return None


def _q(params: Mapping[str, str | None]) -> float:
    try:
        return float(params.get("q") or "1")
    except ValueError:
        return 0.0


def redirect_contacts(msg: Response) -> tuple[str, ...]:
    """A 3xx's SIP and SIPS Contact URIs, highest q first (ties keep their
    order); unparseable and non-SIP contacts are dropped."""
    found: list[tuple[float, str]] = []
    for value in msg.get_all("Contact"):
        try:
            addr = parse_name_addr(value)
            parse_uri(addr.uri)
        except SipParseError:
            continue
        found.append((_q(addr.params), addr.uri))
    found.sort(key=lambda item: -item[0])
    return tuple(uri for _, uri in found)
