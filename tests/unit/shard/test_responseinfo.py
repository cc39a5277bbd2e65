"""A response to our SUBSCRIBE as the machine sees it."""

from __future__ import annotations

from presence_b2b.shard.responseinfo import redirect_contacts, response_info
from presence_b2b.sip.message import Response


def test_numbers_that_do_not_parse_count_as_missing() -> None:
    resp = Response(423, "Interval Too Brief")
    resp.add("Min-Expires", "soon")
    resp.add("Retry-After", "-1")
    resp.add("Expires", "120")
    info = response_info(resp, 7)
    assert (info.code, info.expires, info.min_expires, info.retry_after, info.txn) == (
        423, 120, None, None, 7,
    )


def test_only_a_3xx_carries_contacts() -> None:
    resp = Response(200, "OK")
    resp.add("Contact", "<sip:a@h>")
    assert response_info(resp, 1).contacts == ()


def test_redirect_contacts_are_ordered_by_q_with_ties_kept_in_order() -> None:
    resp = Response(302, "Moved")
    for value in (
        "<sip:a@h>;q=0.5", "<tel:+1>", "<sip:b@h>", "<sips:c@h>;q=0.5", "bad<", "<sip:d@h>;q=x",
    ):
        resp.add("Contact", value)
    assert redirect_contacts(resp) == ("sip:b@h", "sip:a@h", "sips:c@h", "sip:d@h")
