"""The message-summary document (RFC 3842, ``application/simple-message-summary``).

A consumer of ``Event: message-summary`` drives a message-waiting lamp: it
wants "are there messages", the account, and the counts per message class
(``Voice-Message: 2/8 (0/2)`` is 2 new and 8 old, of which 0 and 2 urgent).

The body is text, not XML: lines of ``Name: value``. Only the summary section
is read; the optional message headers after the first empty line are not
modelled (the raw body travels with the status). Lenient: header names are
matched in any case, LF alone ends a line as CRLF does, unknown lines are
skipped, a count line that does not read gives nothing for that class. A body
with neither a ``Messages-Waiting`` line nor a count line is refused.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from .xmlsafe import BodyError, check_size

__all__ = [
    "CLASSES",
    "MAX_SUMMARY_BYTES",
    "MessageCounts",
    "MessageSummary",
    "parse_message_summary",
]

#: A summary is a few lines; anything bigger is not one.
MAX_SUMMARY_BYTES: Final = 64 * 1024
#: The message context classes of RFC 3458 that RFC 3842 counts, lower case.
CLASSES: Final = frozenset(
    (
        "voice-message",
        "fax-message",
        "pager-message",
        "multimedia-message",
        "text-message",
        "none",
    )
)
_COUNTS: Final = re.compile(
    r"(\d{1,18})\s*/\s*(\d{1,18})(?:\s*\(\s*(\d{1,18})\s*/\s*(\d{1,18})\s*\))?\s*", re.ASCII
)


class MessageCounts(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The counts of one message class; the urgent counts are None when not given."""

    message_class: str  # lower case: voice-message, fax-message, ...
    new: int
    old: int
    new_urgent: int | None = None
    old_urgent: int | None = None


class MessageSummary(
    msgspec.Struct, tag="message-summary", frozen=True, gc=False, omit_defaults=True
):
    """The whole summary. ``waiting`` is None when the body did not say."""

    waiting: bool | None = None
    account: str | None = None
    counts: tuple[MessageCounts, ...] = ()


def parse_message_summary(body: bytes, *, max_bytes: int = MAX_SUMMARY_BYTES) -> MessageSummary:
    """Parse one message summary, or raise BodyError; never anything else."""
    check_size(body, max_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BodyError("not-message-summary", f"not UTF-8 text: {e}") from None
    waiting: bool | None = None
    account: str | None = None
    counts: list[MessageCounts] = []
    seen_status = False
    for line in text.lstrip("\r\n").splitlines():
        if not line.strip(" \t"):
            break  # the optional message headers follow: not modelled
        name, colon, value = line.partition(":")
        if not colon:
            continue
        name = name.strip(" \t").lower()
        value = value.strip(" \t")
        if name == "messages-waiting":
            if not seen_status:  # a repeated line: the first wins
                seen_status = True
                lowered = value.lower()
                waiting = True if lowered == "yes" else False if lowered == "no" else None
        elif name == "message-account":
            if account is None:
                account = value or None
        elif name in CLASSES:
            match = _COUNTS.fullmatch(value)
            if match is not None and all(c.message_class != name for c in counts):
                new, old, new_urgent, old_urgent = match.groups()
                counts.append(
                    MessageCounts(
                        name,
                        int(new),
                        int(old),
                        None if new_urgent is None else int(new_urgent),
                        None if old_urgent is None else int(old_urgent),
                    )
                )
    if not seen_status and not counts:
        raise BodyError(
            "not-message-summary", "neither a Messages-Waiting line nor a message count"
        )
    return MessageSummary(waiting, account, tuple(counts))
