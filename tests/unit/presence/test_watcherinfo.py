"""watcherinfo documents (RFC 3857): who watches a resource, and are they allowed to."""

from __future__ import annotations

import pytest
from presence_b2b.presence.watcherinfo import (
    Watcher,
    WatcherInfo,
    WatcherList,
    parse_watcherinfo,
)
from presence_b2b.presence.xmlsafe import BodyError

NS = "urn:ietf:params:xml:ns:watcherinfo"

# The shape of RFC 3857's example: one active watcher, one waiting for approval.
RFC3857_EXAMPLE = f"""<?xml version="1.0"?>
<watcherinfo xmlns="{NS}" version="0" state="full">
  <watcher-list resource="sip:professor@example.net" package="presence">
    <watcher status="active" id="8ajksjda7s" duration-subscribed="509"
             event="approved">sip:userA@example.net</watcher>
    <watcher status="pending" id="hh8juja87s997-ass7" display-name="Mr. Subscriber"
             event="subscribe" xml:lang="en">sip:userB@example.org</watcher>
  </watcher-list>
</watcherinfo>
""".encode()


def test_rfc3857_example_is_read() -> None:
    assert parse_watcherinfo(RFC3857_EXAMPLE) == WatcherInfo(
        state="full",
        version=0,
        lists=(
            WatcherList(
                resource="sip:professor@example.net",
                package="presence",
                watchers=(
                    Watcher(
                        id="8ajksjda7s",
                        status="active",
                        event="approved",
                        uri="sip:userA@example.net",
                        duration_subscribed=509,
                    ),
                    Watcher(
                        id="hh8juja87s997-ass7",
                        status="pending",
                        event="subscribe",
                        uri="sip:userB@example.org",
                        display_name="Mr. Subscriber",
                        lang="en",
                    ),
                ),
            ),
        ),
    )


def test_several_watched_resources_keep_their_lists_apart() -> None:
    body = (
        f'<watcherinfo xmlns="{NS}" version="3" state="partial">'
        '<watcher-list resource="sip:a@x" package="presence"/>'
        '<watcher-list resource="sip:b@x" package="dialog">'
        '<watcher id="w" status="terminated" event="timeout" expiration="0">sip:c@y</watcher>'
        "</watcher-list></watcherinfo>"
    ).encode()
    info = parse_watcherinfo(body)
    assert [(wl.resource, wl.package, len(wl.watchers)) for wl in info.lists] == [
        ("sip:a@x", "presence", 0),
        ("sip:b@x", "dialog", 1),
    ]
    assert info.lists[1].watchers[0].expiration == 0


def test_another_root_is_not_watcherinfo() -> None:
    with pytest.raises(BodyError) as e:
        parse_watcherinfo(b"<watchers/>")
    assert e.value.kind == "not-watcherinfo"
