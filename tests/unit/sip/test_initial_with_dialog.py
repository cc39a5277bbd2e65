"""build_initial_with_dialog: the request of build_initial_request and the dialog
Dialog.from_request reads back from it, without the parse."""

from __future__ import annotations

import pytest
from presence_b2b.sip.dialog import Dialog, build_initial_request, build_initial_with_dialog

ROUTES = [
    (),
    "<sip:proxy.example.com;lr>",
    "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
    ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
]


@pytest.mark.parametrize("route", ROUTES)
def test_same_request_and_dialog_as_the_parse(route: object) -> None:
    kw = dict(
        from_uri="sip:alice@example.com",
        from_tag="abc123",
        call_id="cid-1@host",
        via_sent_by="127.0.0.1:5070",
        branch="z9hG4bK-1",
        to_uri="sip:bob@example.org",
        route=route,
        headers=[("Event", "presence"), ("Expires", "3600")],
    )
    req, dialog = build_initial_with_dialog("SUBSCRIBE", "sip:bob@example.org", **kw)  # type: ignore[arg-type]
    expected = build_initial_request("SUBSCRIBE", "sip:bob@example.org", **kw)  # type: ignore[arg-type]
    assert req.to_bytes() == expected.to_bytes()
    parsed = Dialog.from_request(expected)
    for name in (
        "call_id",
        "local_tag",
        "local_uri",
        "remote_uri",
        "remote_target",
        "route_set",
        "local_cseq",
        "remote_tag",
        "remote_cseq",
        "confirmed",
    ):
        assert getattr(dialog, name) == getattr(parsed, name), name


def test_canonical_headers_are_copied_as_given() -> None:
    req, _ = build_initial_with_dialog(
        "SUBSCRIBE",
        "sip:bob@example.org",
        from_uri="sip:alice@example.com",
        from_tag="t",
        call_id="c",
        via_sent_by="h:1",
        branch="z9hG4bK-2",
        to_uri="sip:bob@example.org",
        headers=(("Event", "presence"),),
        canonical_headers=True,
    )
    assert req.headers[-1] == ("Event", "presence")
    assert req.get("Call-ID") == "c"
