"""Property tests: how a stream is split into reads never changes what is framed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_b2b.sip.framing import PING, PONG, Frame, StreamError, StreamEvent, StreamFramer
from sip_samples import notify_bytes, subscribe_bytes

bodies = st.binary(max_size=3000)


def lf_only(message: bytes) -> bytes:
    """The message with bare LF line ends in its head (the body is left alone)."""
    head, _, body = message.partition(b"\r\n\r\n")
    return head.replace(b"\r\n", b"\n") + b"\n\n" + body


messages = st.one_of(
    bodies.map(lambda body: notify_bytes(body=body)),
    st.integers(1, 9999).map(lambda n: subscribe_bytes(cseq=n)),
    # LF-only line ends and the compact Content-Length, as tolerant peers send them
    bodies.map(lambda body: lf_only(notify_bytes(body=body))),
    st.just(b"SIP/2.0 200 OK\r\nCSeq: 1 SUBSCRIBE\r\nl:   0  \r\n\r\n"),
)
keepalives = st.sampled_from([b"", PING, PONG])
streams = st.lists(st.tuples(keepalives, messages), min_size=1, max_size=6)


def run(stream: bytes, cuts: list[int], *, pinger: bool) -> list[StreamEvent]:
    framer = StreamFramer(pinger=pinger)
    events: list[StreamEvent] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += framer.feed(stream[start:cut], 0.0)
        start = cut
    events += framer.feed(stream[start:], 0.0)
    return events


def split_points(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, size), max_size=40)


@st.composite
def split_streams(draw: st.DrawFn) -> tuple[list[bytes], bytes, list[int]]:
    """(the messages, the stream with keep-alives between them, where reads end)."""
    parts = draw(streams)
    stream = b"".join(k + m for k, m in parts)
    return [m for _, m in parts], stream, draw(split_points(len(stream)))


@settings(max_examples=300)
@given(case=split_streams())
def test_any_split_of_a_stream_yields_its_messages_in_order(
    case: tuple[list[bytes], bytes, list[int]],
) -> None:
    messages, stream, cuts = case
    events = run(stream, cuts, pinger=True)
    assert [e.data for e in events if isinstance(e, Frame)] == messages
    assert not any(isinstance(e, StreamError) for e in events)


@settings(max_examples=300)
@given(case=split_streams())
def test_on_the_answering_side_keep_alives_do_not_depend_on_the_split_either(
    case: tuple[list[bytes], bytes, list[int]],
) -> None:
    _, stream, cuts = case
    assert run(stream, cuts, pinger=False) == run(stream, [], pinger=False)


@given(junk=st.binary(max_size=400), data=st.data())
def test_arbitrary_bytes_give_frames_or_one_final_error_whatever_the_split(
    junk: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(split_points(len(junk)))
    events = run(junk, cuts, pinger=False)
    errors = [e for e in events if isinstance(e, StreamError)]
    assert len(errors) <= 1
    if errors:
        assert events[-1] is errors[0]
    whole = run(junk, [], pinger=False)
    assert [e for e in events if isinstance(e, Frame)] == [e for e in whole if isinstance(e, Frame)]
