"""ListTracker: a resource list subscription's NOTIFYs become per-resource states."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from presence_b2b.presence.dialoginfo import DialogInfo
from presence_b2b.presence.document import Basic, Note, PresenceTuple, Presentity
from presence_b2b.presence.resourcelist import ListTracker, ResourceList, ResourceState

from tests.peers.list_bodies import LIST, multipart, pidf, resource, rlmi


def full_state(version: int = 1) -> tuple[str, bytes]:
    """The shape of RFC 4662's example: an active resource with PIDF, one pending,
    one not subscribed yet, and one rejected."""
    return multipart(
        rlmi(
            version,
            True,
            '<name xml:lang="en">Buddy List at COM</name>'
            + resource("sip:bob@example.com", "juwigmtboe", cid="bUZBsM@pres.example.com")
            + resource("sip:dave@example.com", "hqzsuxtfyq", "pending")
            + resource("sip:ed@example.net")
            + resource(
                "sip:adam-friends@example.org", "cmpqweitlp", "terminated", reason="rejected"
            ),
        ),
        ("bUZBsM@pres.example.com", "application/pidf+xml", pidf("sip:bob@example.com")),
    )


def bob(basic: Basic) -> Presentity:
    return Presentity("sip:bob@example.com", (PresenceTuple("t", basic),))


def test_a_full_state_gives_one_state_per_resource_instance() -> None:
    result = ListTracker().update(*full_state())
    assert result == ResourceList(
        uri=LIST,
        version=1,
        full_state=True,
        names=(Note("Buddy List at COM", "en"),),
        resources=(
            ResourceState(
                LIST,
                "sip:bob@example.com",
                instance="juwigmtboe",
                state="active",
                content_type="application/pidf+xml",
                presentity=bob("open"),
            ),
            ResourceState(LIST, "sip:dave@example.com", instance="hqzsuxtfyq", state="pending"),
            ResourceState(LIST, "sip:ed@example.net"),
            ResourceState(
                LIST,
                "sip:adam-friends@example.org",
                instance="cmpqweitlp",
                state="terminated",
                reason="rejected",
            ),
        ),
    )


def test_a_partial_state_reports_only_what_changed_and_amends_the_snapshot() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(1))
    result = tracker.update(
        *multipart(
            rlmi(2, False, resource("sip:bob@example.com", "juwigmtboe", cid="b2@x")),
            ("b2@x", "application/pidf+xml", pidf("sip:bob@example.com", "closed")),
        )
    )
    assert not result.needs_refresh
    assert [(s.uri, s.presentity) for s in result.resources] == [
        ("sip:bob@example.com", bob("closed"))
    ]
    snapshot = tracker.snapshot()
    assert snapshot.version == 2 and snapshot.full_state
    assert len(snapshot.resources) == 4
    assert snapshot.resources[0].presentity == bob("closed")


def test_a_gap_in_versions_asks_for_a_refresh_but_still_applies() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(1))
    result = tracker.update(
        *multipart(rlmi(4, False, resource("sip:ed@example.net", "i", "pending")))
    )
    assert result.needs_refresh
    assert [s.state for s in result.resources] == ["pending"]


def test_a_partial_state_before_any_full_state_asks_for_a_refresh() -> None:
    result = ListTracker().update(*multipart(rlmi(7, False, resource("sip:ed@example.net", "i"))))
    assert result.needs_refresh
    assert len(result.resources) == 1


def test_an_old_or_repeated_partial_state_is_stale_and_ignored() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(3))
    result = tracker.update(*multipart(rlmi(3, False, resource("sip:ed@example.net", "i"))))
    assert result.stale and not result.resources
    assert tracker.snapshot().resources[2] == ResourceState(LIST, "sip:ed@example.net")


def test_a_full_state_resets_the_version_whatever_came_before() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(9))
    assert not tracker.update(*full_state(1)).needs_refresh
    assert not tracker.update(*multipart(rlmi(2, False, ""))).needs_refresh


def test_a_resource_missing_from_the_next_full_state_is_reported_removed() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(1))
    result = tracker.update(*multipart(rlmi(2, True, resource("sip:ed@example.net"))))
    assert [(s.uri, s.state, s.removed) for s in result.resources] == [
        ("sip:ed@example.net", "", False),
        ("sip:bob@example.com", "terminated", True),
        ("sip:dave@example.com", "terminated", True),
        ("sip:adam-friends@example.org", "terminated", True),
    ]
    assert len(tracker.snapshot().resources) == 1


def test_a_resource_in_a_partial_state_is_described_whole() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(1))
    tracker.update(*multipart(rlmi(2, False, resource("sip:dave@example.com", "new", "active"))))
    dave = [s for s in tracker.snapshot().resources if s.uri == "sip:dave@example.com"]
    assert [(s.instance, s.state) for s in dave] == [("new", "active")]


def test_a_terminated_instance_is_delivered_with_its_reason() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(1))
    result = tracker.update(
        *multipart(
            rlmi(
                2,
                False,
                resource("sip:dave@example.com", "hqzsuxtfyq", "terminated", reason="noresource"),
            )
        )
    )
    assert [(s.state, s.reason) for s in result.resources] == [("terminated", "noresource")]


def test_a_cid_naming_no_part_flags_that_resource_only() -> None:
    result = ListTracker().update(
        *multipart(
            rlmi(
                1,
                True,
                resource("sip:a@x", "i1", cid="missing@x") + resource("sip:b@x", "i2", cid="b@x"),
            ),
            ("b@x", "application/pidf+xml", pidf("sip:b@x")),
        )
    )
    missing, present = result.resources
    assert missing.error == "multipart: no body part has Content-ID <missing@x>"
    assert present.presentity is not None and not present.error
    assert not result.error


def test_an_unreadable_part_keeps_its_body_and_says_why() -> None:
    result = ListTracker().update(
        *multipart(
            rlmi(
                1, True, resource("sip:a@x", "i1", cid="a@x") + resource("sip:b@x", "i2", cid="b@x")
            ),
            ("a@x", "application/pidf+xml", b"<presence"),
            ("b@x", "application/xpidf+xml", b"<presence/>"),
        )
    )
    broken, foreign = result.resources
    assert broken.error.startswith("pidf: not well-formed XML")
    assert broken.body == b"<presence"
    assert foreign.error == "unsupported content type application/xpidf+xml"
    assert foreign.body == b"<presence/>"


def test_parts_are_read_by_the_list_package() -> None:
    dialog = b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" entity="sip:a@x"/>'
    result = ListTracker("dialog").update(
        *multipart(
            rlmi(1, True, resource("sip:a@x", "i", cid="a@x")),
            ("a@x", "application/dialog-info+xml", dialog),
        )
    )
    assert result.resources[0].document == DialogInfo(entity="sip:a@x")
    assert result.resources[0].body == b""


def nested_list(
    version: int,
    full: bool,
    body_resources: str,
    *parts: tuple[str, str, bytes],
    boundary: str = "nested-b",
) -> tuple[str, bytes]:
    return multipart(
        rlmi(version, full, body_resources, uri="sip:adam-friends@example.org"),
        *parts,
        boundary=boundary,
    )


def test_nested_lists_are_flattened_under_their_own_uri() -> None:
    inner_type, inner = nested_list(
        1,
        True,
        resource("sip:carol@example.org", "c1", cid="carol@x"),
        ("carol@x", "application/pidf+xml", pidf("sip:carol@example.org")),
    )
    tracker = ListTracker()
    result = tracker.update(
        *multipart(
            rlmi(
                1,
                True,
                resource("sip:bob@example.com", "b1", "pending")
                + resource("sip:adam-friends@example.org", "n1", cid="inner@x"),
            ),
            ("inner@x", inner_type, inner),
        )
    )
    assert [(s.list_uri, s.uri, s.state) for s in result.resources] == [
        (LIST, "sip:bob@example.com", "pending"),
        ("sip:adam-friends@example.org", "sip:carol@example.org", "active"),
    ]
    assert result.resources[1].presentity is not None


def test_a_nested_list_left_out_of_a_full_state_has_its_resources_removed() -> None:
    inner_type, inner = nested_list(1, True, resource("sip:carol@example.org", "c1", "pending"))
    tracker = ListTracker()
    tracker.update(
        *multipart(
            rlmi(1, True, resource("sip:adam-friends@example.org", "n1", cid="inner@x")),
            ("inner@x", inner_type, inner),
        )
    )
    result = tracker.update(*multipart(rlmi(2, True, "")))
    assert [(s.uri, s.removed) for s in result.resources] == [("sip:carol@example.org", True)]
    assert tracker.snapshot().resources == ()


def test_nesting_deeper_than_the_limit_is_flagged_not_followed() -> None:
    content_type, body = multipart(rlmi(1, True, ""), boundary="level-0")
    for level in range(1, 4):
        content_type, body = multipart(
            rlmi(
                1, True, resource(f"sip:l{level}@x", "i", cid=f"l{level}@x"), uri=f"sip:l{level}@x"
            ),
            (f"l{level}@x", content_type, body),
            boundary=f"level-{level}",
        )
    result = ListTracker(max_depth=2).update(content_type, body)
    (deepest,) = result.resources
    assert deepest.error == "rlmi: lists nested deeper than 2"
    assert result.needs_refresh


def test_a_list_nested_in_itself_is_flagged() -> None:
    inner_type, inner = multipart(rlmi(1, True, ""), boundary="inner")
    result = ListTracker().update(
        *multipart(rlmi(1, True, resource(LIST, "i", cid="self@x")), ("self@x", inner_type, inner))
    )
    assert result.resources[0].error == f"rlmi: the list {LIST} is nested in itself"


@pytest.mark.parametrize(
    ("content_type", "body", "error", "kind"),
    [
        (
            "application/pidf+xml",
            b"<presence/>",
            "multipart: a list body is multipart/related, not application/pidf+xml",
            "unsupported-type",
        ),
        (
            "multipart/related",
            b"--x\r\n\r\nbody\r\n--x--\r\n",
            "multipart: the Content-Type has no usable boundary",
            "bad-multipart",
        ),
        (
            "multipart/related;boundary=x",
            b"--x\r\n\r\nbody\r\n",
            "multipart: no closing delimiter: the body is truncated",
            "bad-multipart",
        ),
        (
            "multipart/related;boundary=x",
            b"--x\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n--x--\r\n",
            "rlmi: the root part is application/pidf+xml, not application/rlmi+xml",
            "not-rlmi",
        ),
        (
            "multipart/related;boundary=x",
            b"--x\r\nContent-Type: application/rlmi+xml\r\n\r\n<!DOCTYPE l><l/>\r\n--x--\r\n",
            "rlmi: a DOCTYPE is not allowed in a NOTIFY body",
            "forbidden-dtd",
        ),
    ],
)
def test_an_unreadable_body_is_a_flagged_result_asking_for_a_refresh(
    content_type: str, body: bytes, error: str, kind: str
) -> None:
    tracker = ListTracker()
    assert tracker.update(content_type, body) == ResourceList(
        needs_refresh=True, error=error, error_kind=kind
    )
    assert tracker.snapshot().resources == ()


def test_a_body_for_another_list_is_flagged() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(1))
    result = tracker.update(*multipart(rlmi(2, True, "", uri="sip:other@x")))
    assert result.error_kind == "other-list"
    assert len(tracker.snapshot().resources) == 4


def test_reset_forgets_versions_and_resources() -> None:
    tracker = ListTracker()
    tracker.update(*full_state(5))
    tracker.reset()
    assert tracker.snapshot() == ResourceList(full_state=True)
    assert tracker.update(*multipart(rlmi(1, False, ""))).needs_refresh


notifications = st.lists(
    st.tuples(st.integers(min_value=0, max_value=6), st.booleans(), st.sampled_from("abc")),
    max_size=12,
)


@given(notifications)
def test_refresh_and_staleness_follow_the_version_counter(
    steps: list[tuple[int, bool, str]],
) -> None:
    tracker = ListTracker()
    last: int | None = None
    for version, full, who in steps:
        result = tracker.update(*multipart(rlmi(version, full, resource(f"sip:{who}@x", who))))
        stale = not full and last is not None and version <= last
        assert result.stale == stale
        assert result.needs_refresh == (
            not full and not stale and (last is None or version != last + 1)
        )
        if not stale:
            last = version
            assert [s.uri for s in result.resources if not s.removed] == [f"sip:{who}@x"]


@given(
    st.sampled_from(["multipart/related;boundary=b", "multipart/related", None, "text/x"]),
    st.binary(max_size=600),
)
def test_any_body_gives_a_result_never_an_exception(content_type: str | None, body: bytes) -> None:
    result = ListTracker().update(content_type, body)
    assert isinstance(result, ResourceList)
    assert bool(result.error) == bool(result.error_kind)


SOUP = st.sampled_from(
    [
        b"--b",
        b"--b--",
        b"\r\n",
        b"Content-Type: application/rlmi+xml",
        b"Content-ID: <r@x>",
        b"Content-Type: multipart/related;boundary=b",
        b"Content-Type: application/pidf+xml",
        rlmi(1, True, resource("sip:a@x", "i", cid="r@x")),
        rlmi(1, False, ""),
        pidf("sip:a@x"),
    ]
)


@settings(max_examples=300)
@given(st.lists(SOUP, max_size=30).map(b"\r\n".join))
def test_near_list_soup_gives_a_result_never_an_exception(body: bytes) -> None:
    tracker = ListTracker()
    for _ in range(2):
        assert isinstance(tracker.update("multipart/related;boundary=b", body), ResourceList)


def test_partial_states_naming_new_resources_cannot_grow_the_tracker_without_bound() -> None:
    tracker = ListTracker(max_resources=5)
    tracker.update(*multipart(rlmi(1, True, resource("sip:r0@x", "i"))))
    for version in range(2, 6):
        result = tracker.update(
            *multipart(rlmi(version, False, resource(f"sip:r{version}@x", "i")))
        )
        assert not result.error
    result = tracker.update(*multipart(rlmi(6, False, resource("sip:r6@x", "i"))))
    assert result.error_kind == "too-large"
    assert result.needs_refresh
    assert [s.uri for s in result.resources] == ["sip:r6@x"]  # still delivered
    assert tracker.snapshot().resources == ()


def test_the_bytes_a_tracker_keeps_are_bounded() -> None:
    raw = b"<presence>" + b"x" * 1000 + b"</presence>"  # unreadable: kept raw
    tracker = ListTracker(max_retained_bytes=2500)
    for version, who in enumerate("ab", start=1):
        result = tracker.update(
            *multipart(
                rlmi(version, version == 1, resource(f"sip:{who}@x", "i", cid=f"{who}@x")),
                (f"{who}@x", "application/xpidf+xml", raw),
            )
        )
        assert not result.error
    result = tracker.update(
        *multipart(
            rlmi(3, False, resource("sip:c@x", "i", cid="c@x")),
            ("c@x", "application/xpidf+xml", raw),
        )
    )
    assert result.error_kind == "too-large"


def test_replacing_a_resource_frees_what_it_weighed() -> None:
    raw = b"<presence>" + b"x" * 1000 + b"</presence>"
    tracker = ListTracker(max_retained_bytes=2500)
    for version in range(1, 10):
        result = tracker.update(
            *multipart(
                rlmi(version, version == 1, resource("sip:a@x", "i", cid="a@x")),
                ("a@x", "application/xpidf+xml", raw),
            )
        )
        assert not result.error


states = st.sampled_from(["active", "pending", "terminated"])
listings = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), states, max_size=4)


@given(st.lists(st.tuples(st.booleans(), listings), max_size=10))
def test_the_snapshot_is_the_last_full_state_amended_by_later_partial_states(
    steps: list[tuple[bool, dict[str, str]]],
) -> None:
    tracker = ListTracker()
    model: dict[str, str] = {}
    for version, (full, listed) in enumerate(steps, start=1):
        body = "".join(resource(f"sip:{who}@x", who, state) for who, state in listed.items())
        tracker.update(*multipart(rlmi(version, full, body)))
        model = {**({} if full else model), **{f"sip:{w}@x": s for w, s in listed.items()}}
        snapshot = {s.uri: s.state for s in tracker.snapshot().resources}
        assert snapshot == model


LAUGHS = (
    b'<!DOCTYPE presence [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="&b;"/>'
)


def test_a_hostile_part_costs_its_resource_only() -> None:
    result = ListTracker().update(
        *multipart(
            rlmi(
                1,
                True,
                resource("sip:evil@x", "e", cid="e@x") + resource("sip:ok@x", "o", cid="o@x"),
            ),
            ("e@x", "application/pidf+xml", LAUGHS),
            ("o@x", "application/pidf+xml", pidf("sip:ok@x")),
        )
    )
    evil, ok = result.resources
    assert evil.error == "pidf: a DOCTYPE is not allowed in a NOTIFY body"
    assert evil.presentity is None and evil.body == LAUGHS
    assert ok.presentity is not None
    assert not result.needs_refresh


def test_a_list_of_a_thousand_hostile_parts_is_read_quickly() -> None:
    names = [f"r{i}" for i in range(999)]
    content_type, body = multipart(
        rlmi(1, True, "".join(resource(f"sip:{n}@x", n, cid=f"{n}@x") for n in names)),
        *[(f"{n}@x", "application/pidf+xml", LAUGHS) for n in names],
    )
    start = time.perf_counter()
    result = ListTracker().update(content_type, body)
    assert time.perf_counter() - start < 1.0
    assert len(result.resources) == 999
    assert all(s.error.startswith("pidf: a DOCTYPE") for s in result.resources)
