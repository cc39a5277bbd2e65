"""A CRLF keep-alive is not a parse error."""

from __future__ import annotations

from engine_harness import Harness


def test_crlf_keepalives_are_dropped_without_counting_an_error() -> None:
    h = Harness()
    for data in (b"\r\n\r\n", b"\r\n", b"\n"):
        h.datagram(data)
    assert h.sent == []
    assert not h.obs.counts
    h.datagram(b"\x00garbage")
    assert h.obs.counts["error", "parse"] == 1
