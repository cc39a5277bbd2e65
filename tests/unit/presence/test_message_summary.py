"""message-summary bodies (RFC 3842): is a message waiting, and how many per class."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.presence.summary import (
    CLASSES,
    MessageCounts,
    MessageSummary,
    parse_message_summary,
)
from presence_b2b.presence.xmlsafe import BodyError

# RFC 3842's first example, and its example with message headers after the summary.
RFC3842_SIMPLE = (
    b"Messages-Waiting: yes\r\n"
    b"Message-Account: sip:alice@vmail.example.com\r\n"
    b"Voice-Message: 2/8 (0/2)\r\n"
)
RFC3842_WITH_HEADERS = (
    b"Messages-Waiting: yes\r\n"
    b"Message-Account: sip:alice@vmail.example.com\r\n"
    b"Voice-Message: 4/8 (1/2)\r\n"
    b"\r\n"
    b"To: <alice@atlanta.example.com>\r\n"
    b"From: <bob@biloxi.example.com>\r\n"
    b"Subject: carpool tomorrow?\r\n"
    b"Voice-Message: 99/99\r\n"
)


def test_rfc3842_summary_is_read() -> None:
    assert parse_message_summary(RFC3842_SIMPLE) == MessageSummary(
        waiting=True,
        account="sip:alice@vmail.example.com",
        counts=(MessageCounts("voice-message", 2, 8, 0, 2),),
    )


def test_message_headers_after_the_empty_line_are_not_counted() -> None:
    assert parse_message_summary(RFC3842_WITH_HEADERS).counts == (
        MessageCounts("voice-message", 4, 8, 1, 2),
    )


def test_counts_without_urgent_numbers_leave_them_unknown() -> None:
    summary = parse_message_summary(b"Messages-Waiting: no\nFax-Message: 0/1\n")
    assert summary == MessageSummary(waiting=False, counts=(MessageCounts("fax-message", 0, 1),))


def test_names_match_in_any_case_and_the_first_repeat_wins() -> None:
    body = b"messages-waiting: YES\r\nvoice-message: 1/2\r\nVOICE-MESSAGE: 3/4\r\n"
    assert parse_message_summary(body) == MessageSummary(
        waiting=True, counts=(MessageCounts("voice-message", 1, 2),)
    )


def test_unreadable_lines_are_skipped() -> None:
    body = b"Messages-Waiting: maybe\r\nVoice-Message: lots\r\nX-Foo: 1/2\r\nno colon\r\n"
    assert parse_message_summary(body) == MessageSummary()


def test_a_body_without_a_summary_is_refused() -> None:
    with pytest.raises(BodyError) as e:
        parse_message_summary(b"Hello: world\r\n")
    assert e.value.kind == "not-message-summary"


def test_non_utf8_and_oversize_bodies_are_refused() -> None:
    with pytest.raises(BodyError) as e:
        parse_message_summary(b"Messages-Waiting: \xff\r\n")
    assert e.value.kind == "not-message-summary"
    with pytest.raises(BodyError) as e:
        parse_message_summary(b"Messages-Waiting: yes\r\n" + b" " * 70_000)
    assert e.value.kind == "too-large"


counts = st.integers(min_value=0, max_value=10**12)


@given(
    st.sampled_from(sorted(CLASSES)),
    counts,
    counts,
    st.none() | st.tuples(counts, counts),
    st.sampled_from(["\r\n", "\n"]),
)
def test_any_count_line_round_trips(
    message_class: str, new: int, old: int, urgent: tuple[int, int] | None, eol: str
) -> None:
    line = f"{message_class.title()}: {new}/{old}"
    if urgent is not None:
        line += f" ({urgent[0]}/{urgent[1]})"
    body = f"Messages-Waiting: yes{eol}{line}{eol}".encode()
    expected = MessageCounts(message_class, new, old, *(urgent or (None, None)))
    assert parse_message_summary(body).counts == (expected,)


@given(st.binary(max_size=500))
def test_arbitrary_bytes_raise_nothing_but_body_error(body: bytes) -> None:
    with contextlib.suppress(BodyError):
        parse_message_summary(body)
