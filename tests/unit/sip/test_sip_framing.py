"""Stream framing: bytes from a TCP/TLS connection in, whole messages and keep-alives out."""

from __future__ import annotations

from presence_b2b.sip.framing import (
    PING,
    PONG,
    Frame,
    FramingLimits,
    Ping,
    Pong,
    StreamError,
    StreamFramer,
)
from presence_b2b.sip.message import parse_message
from sip_samples import notify_bytes, subscribe_bytes

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bKsub1\r\n"
    b"Call-ID: a84b4c76e66710@10.0.0.1\r\n"
    b"CSeq: 1 SUBSCRIBE\r\n"
    b"l: 0\r\n\r\n"
)


def frames(events: list[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Frame)]


def test_two_messages_in_one_read_come_out_as_two_frames() -> None:
    framer = StreamFramer()
    events = framer.feed(notify_bytes() + subscribe_bytes(), 0.0)
    assert frames(events) == [notify_bytes(), subscribe_bytes()]


def test_a_message_split_inside_its_body_waits_for_the_rest() -> None:
    framer = StreamFramer()
    data = notify_bytes()
    assert framer.feed(data[:-10], 0.0) == []
    assert framer.feed(data[-10:], 0.1) == [Frame(data)]


def test_the_body_ends_where_content_length_says_not_where_the_read_ends() -> None:
    framer = StreamFramer()
    data = notify_bytes()
    events = framer.feed(data + OK_200[:5], 0.0)
    assert frames(events) == [data]
    assert framer.buffered == 5


def test_the_compact_form_l_frames_like_content_length() -> None:
    assert StreamFramer().feed(OK_200, 0.0) == [Frame(OK_200)]


def test_a_frame_parses_to_the_same_message_as_the_datagram() -> None:
    [frame] = StreamFramer().feed(notify_bytes(), 0.0)
    assert isinstance(frame, Frame)
    assert parse_message(frame.data) == parse_message(notify_bytes())


def test_a_message_without_content_length_ends_the_stream() -> None:
    data = subscribe_bytes().replace(b"Content-Length: 0\r\n", b"")
    [error] = StreamFramer().feed(data, 0.0)
    assert isinstance(error, StreamError)
    assert error.kind == "content-length"


def test_conflicting_content_lengths_end_the_stream() -> None:
    data = OK_200.replace(b"l: 0\r\n", b"l: 0\r\nContent-Length: 3\r\n")
    [error] = StreamFramer().feed(data + b"abc", 0.0)
    assert error == StreamError("content-length", "conflicting Content-Length headers")


def test_a_non_numeric_content_length_ends_the_stream() -> None:
    [error] = StreamFramer().feed(OK_200.replace(b"l: 0", b"l: -1"), 0.0)
    assert isinstance(error, StreamError)
    assert error.kind == "content-length"


def test_bytes_that_do_not_start_a_sip_message_end_the_stream() -> None:
    [error] = StreamFramer().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert isinstance(error, StreamError)
    assert error.kind == "start-line"


def test_a_message_over_the_size_limit_ends_the_stream_before_its_body_arrives() -> None:
    framer = StreamFramer(FramingLimits(max_message_size=1000))
    [error] = framer.feed(notify_bytes(body=b"x" * 2000)[:600], 0.0)
    assert isinstance(error, StreamError)
    assert error.kind == "too-large"


def test_a_header_that_never_ends_is_refused_at_the_header_limit() -> None:
    framer = StreamFramer(FramingLimits(max_header_bytes=1024))
    assert framer.feed(b"NOTIFY sip:a@b SIP/2.0\r\n", 0.0) == []
    [error] = framer.feed(b"X-Filler: " + b"y" * 1100 + b"\r\n", 0.0)
    assert isinstance(error, StreamError)
    assert error.kind == "too-large"


def test_too_many_header_lines_end_the_stream() -> None:
    framer = StreamFramer(FramingLimits(max_headers=5))
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(10))
    [error] = framer.feed(notify_bytes(extra=extra), 0.0)
    assert isinstance(error, StreamError)
    assert error.kind == "too-large"


def test_a_twenty_kilobyte_message_is_framed_whole() -> None:
    data = notify_bytes(body=b"<!--" + b"z" * 20_000 + b"-->")
    framer = StreamFramer()
    events: list[object] = []
    for i in range(0, len(data), 1400):  # as TCP segments would bring it
        events += framer.feed(data[i : i + 1400], 0.0)
    assert frames(events) == [data]


def test_nothing_is_given_after_a_stream_error() -> None:
    framer = StreamFramer()
    framer.feed(b"garbage\r\n", 0.0)
    assert framer.finished
    assert framer.feed(subscribe_bytes(), 0.0) == []


def test_a_double_crlf_between_messages_is_a_ping_to_answer_with_a_single_crlf() -> None:
    events = StreamFramer().feed(PING + subscribe_bytes(), 0.0)
    assert events == [Ping(), Frame(subscribe_bytes())]
    assert PONG == b"\r\n"


def test_a_single_crlf_is_a_pong_for_the_side_that_pings() -> None:
    assert StreamFramer(pinger=True).feed(PONG, 0.0) == [Pong()]


def test_the_side_that_answers_pings_waits_to_see_whether_a_lone_crlf_is_half_a_ping() -> None:
    framer = StreamFramer(pinger=False)
    assert framer.feed(b"\r\n", 0.0) == []
    assert framer.feed(b"\r\n", 0.0) == [Ping()]


def test_a_crlf_before_a_message_is_a_pong_and_the_message_follows() -> None:
    events = StreamFramer(pinger=False).feed(b"\r\n" + OK_200, 0.0)
    assert events == [Pong(), Frame(OK_200)]


def test_a_cr_without_lf_between_messages_ends_the_stream() -> None:
    [error] = StreamFramer().feed(b"\rX", 0.0)
    assert isinstance(error, StreamError)
    assert error.kind == "keep-alive"


def test_a_partial_message_times_out_on_the_injected_clock() -> None:
    framer = StreamFramer(FramingLimits(read_timeout=5.0))
    framer.feed(notify_bytes()[:50], 100.0)
    assert framer.next_deadline() == 105.0
    assert framer.on_timer(104.9) == []
    [error] = framer.on_timer(105.0)
    assert isinstance(error, StreamError)
    assert error.kind == "timeout"
    assert framer.finished


def test_an_idle_connection_between_messages_has_no_read_deadline() -> None:
    framer = StreamFramer(FramingLimits(read_timeout=5.0))
    framer.feed(subscribe_bytes() + PING, 100.0)
    assert framer.next_deadline() is None
    assert framer.on_timer(1000.0) == []


def test_the_read_timeout_counts_from_the_message_s_first_byte_not_the_last() -> None:
    framer = StreamFramer(FramingLimits(read_timeout=5.0))
    data = notify_bytes()
    framer.feed(data[:10], 100.0)
    framer.feed(data[10:20], 104.0)
    assert framer.next_deadline() == 105.0
