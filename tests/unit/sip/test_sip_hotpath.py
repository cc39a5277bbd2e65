"""The hot path's shortcuts give exactly what the general code gives."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.sip.dialog import Dialog, _contact_uri, _same_target
from presence_b2b.sip.headers import parse_name_addr, parse_params, parse_tag
from presence_b2b.sip.message import (
    Request,
    SipParseError,
    canonical_name,
    parse_message,
    require,
)
from presence_b2b.sip.transaction import (
    TimerSettings,
    TransactionTable,
    make_response,
    response_bytes,
)
from sip_samples import notify_bytes


def notify() -> Request:
    msg = parse_message(notify_bytes())
    assert isinstance(msg, Request)
    return msg


# --- the header index ------------------------------------------------------------


def test_get_answers_the_first_value_whatever_the_spelling() -> None:
    msg = parse_message(notify_bytes(extra=b"Via: SIP/2.0/UDP second;branch=z9hG4bKb\r\n"))
    assert msg.get("via") == msg.get("Via") == msg.get("v")
    assert (msg.get("Via") or "").startswith("SIP/2.0/UDP 10.0.0.2:5060")
    assert msg.get("CALL-ID") == "a84b4c76e66710@10.0.0.1"
    assert msg.get("X-Absent") is None
    assert msg.first_values()["Event"] == "presence"


def test_the_index_follows_add_set_remove_and_list_growth() -> None:
    msg = notify()
    assert msg.get("Expires") is None
    msg.add("Expires", "10")
    assert msg.get("Expires") == "10"
    msg.set("Event", "dialog")
    assert msg.get("Event") == "dialog"
    msg.remove("Event")
    assert msg.get("Event") is None and "Event" not in msg
    msg.headers.insert(0, ("Event", "presence.winfo"))  # direct growth is seen too
    assert msg.get("Event") == "presence.winfo"
    assert msg.get("Content-Length") == str(len(msg.body))


def test_require_uses_the_index() -> None:
    msg = notify()
    require(msg, "Via", "f", "call-id")
    with pytest.raises(SipParseError) as e:
        require(msg, "Expires")
    assert e.value.kind == "missing-header"


@pytest.mark.parametrize("name", ["Call-ID", "call-id", "i", "CSEQ", "x-sipp-foo", "X-Foo"])
def test_canonical_name_is_the_same_through_the_exact_shortcut(name: str) -> None:
    expected = {"call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}.get(
        name.lower(), "-".join(p[:1].upper() + p[1:] for p in name.lower().split("-"))
    )
    assert canonical_name(name) == expected


# --- parse_params -------------------------------------------------------------------


def _reference_params(text: str) -> dict[str, str | None]:
    """The plain reading, written out: split at `;` outside quotes, lower-case the
    names, unquote the values."""
    segments = [""]
    in_quotes = escaped = False
    for ch in text:
        if ch == ";" and not in_quotes:
            segments.append("")
            continue
        segments[-1] += ch
        if escaped:
            escaped = False
        elif in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
    params: dict[str, str | None] = {}
    for seg in segments:
        name, eq, value = seg.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.?)", r"\1", value[1:-1])
        params[name] = value if eq else None
    return params


@given(st.text(alphabet=';="\\ \tabcTAG=-.1', max_size=40))
def test_parse_params_matches_the_reference_reading(text: str) -> None:
    assert parse_params(text) == _reference_params(text)


# --- Contact target refresh -------------------------------------------------------


@pytest.mark.parametrize(
    "contact",
    [
        "<sip:a@10.0.0.2:5060>",
        "<sip:a@10.0.0.2:5060>;expires=10",
        '"Al" <sip:a@10.0.0.2:5060>',
        "sip:a@10.0.0.2:5060",
        "<sip:a@10.0.0.2:5060>, <sip:b@x>",
        "< sip:a@10.0.0.2:5060>",
        "<sip:a@10.0.0.2:5060;lr>",
    ],
)
@pytest.mark.parametrize("target", ["sip:a@10.0.0.2:5060", "sip:a@10.0.0.2:5060;lr", "sip:b@x"])
def test_the_unchanged_contact_shortcut_agrees_with_parsing(contact: str, target: str) -> None:
    msg = notify()
    msg.set("Contact", contact)
    if _same_target(contact, target):
        assert _contact_uri(msg) == target


def test_a_changed_contact_still_moves_the_target() -> None:
    d = Dialog(
        call_id="c", local_tag="t", local_uri="sip:l@x", remote_uri="sip:r@x",
        remote_target="sip:alice@10.0.0.2:5060",
    )  # fmt: skip
    msg = notify()
    assert d.update_from_request(msg)
    assert d.remote_target == "sip:alice@10.0.0.2:5060"
    msg.set("Contact", "<sip:alice@10.0.0.9:5060>;expires=5")
    msg.set("CSeq", "3 NOTIFY")
    assert d.update_from_request(msg)
    assert d.remote_target == "sip:alice@10.0.0.9:5060"


def test_route_set_reads_as_a_list_and_is_a_copy() -> None:
    d = Dialog(
        call_id="c", local_tag="t", local_uri="sip:l@x", remote_uri="sip:r@x",
        remote_target="sip:t@x", route_set=["sip:p1;lr"],
    )  # fmt: skip
    assert d.route_set == ["sip:p1;lr"]
    d.route_set.append("sip:p2;lr")
    assert d.route_set == ["sip:p1;lr"]
    d.route_set = []
    assert d.route_set == []


# --- responses ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [100, 200, 400, 405, 481, 489])
def test_response_bytes_equal_make_response_to_bytes(status: int) -> None:
    req = parse_message(
        notify_bytes(extra=b"Timestamp: 54\r\nRecord-Route: <sip:p;lr>\r\nv: SIP/2.0/UDP p\r\n")
    )
    assert isinstance(req, Request)
    extra = [("Allow", "NOTIFY, OPTIONS"), ("content-length", "99"), ("x-foo", "1")]
    assert (
        response_bytes(req, status, "Why", headers=extra)
        == make_response(req, status, "Why", headers=extra).to_bytes()
    )
    assert response_bytes(req, status) == make_response(req, status).to_bytes()


def test_response_bytes_refuse_header_injection() -> None:
    with pytest.raises(ValueError):
        response_bytes(notify(), 200, headers=[("X-A", "1\r\nX-B: 2")])


# --- tags ------------------------------------------------------------------------


@given(st.text(alphabet='<>;="\\ \tsip:a@tagTG=x,', max_size=30))
def test_parse_tag_agrees_with_parse_name_addr(value: str) -> None:
    try:
        expected: str | type[SipParseError] | None = parse_name_addr(value).tag
    except SipParseError:
        expected = SipParseError
    try:
        got: str | type[SipParseError] | None = parse_tag(value)
    except SipParseError:
        got = SipParseError
    assert got == expected


@pytest.mark.parametrize(
    "value",
    ["<sip:a@x>;tag=1", "<sip:a@x>", '"A" <sip:a@x>;tag=2', "sip:a@x;tag=3", "<sip:a@x>;TAG=4;x"],
)
def test_parse_tag_examples(value: str) -> None:
    assert parse_tag(value) == parse_name_addr(value).tag


# --- memory of completed transactions -----------------------------------------------


def test_a_completed_client_transaction_keeps_only_its_key() -> None:
    from sip_samples import subscribe_bytes

    table = TransactionTable()
    req = parse_message(subscribe_bytes(branch="z9hG4bKc1"))
    assert isinstance(req, Request)
    txn, _ = table.start_client(req, 0.0)
    ok = make_response(req, 200, to_tag="x")
    found, events = table.receive_response(parse_message(ok.to_bytes()), 0.1)  # type: ignore[arg-type]
    assert found is txn and len(events) == 1
    assert txn.request is None and txn.last_response is None and txn.data == b""
    assert table.receive_response(parse_message(ok.to_bytes()), 0.2) == (txn, [])  # type: ignore[arg-type]


def test_the_client_dict_shrinks_after_a_burst() -> None:
    import sys

    from sip_samples import subscribe_bytes

    table = TransactionTable(TimerSettings(t1=0.01))
    for i in range(5000):
        req = parse_message(subscribe_bytes(branch=f"z9hG4bKs{i}"))
        assert isinstance(req, Request)
        table.start_client(req, 0.0)
    grown = sys.getsizeof(table._clients)
    table.on_timer(1.0)  # Timer F: every one timed out
    assert len(table) == 0
    assert sys.getsizeof(table._clients) < grown // 8
