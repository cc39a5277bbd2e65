"""``presence-b2b watch --event`` against the running service: other event packages
and resource lists reach an operator's terminal as JSON lines."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.helpers import record_at, watch_json

pytestmark = pytest.mark.integration


def watch(control_socket: str, record: str, package: str, count: int) -> list[dict[str, Any]]:
    code, lines, stderr = watch_json(control_socket, record, "--event", package, count=count)
    assert code == 0, stderr
    return lines


def test_watch_event_dialog_prints_the_dialog_info_document(service, sipp_uas):
    svc = service(shards=1)
    uas = sipp_uas("uas_dialog_info", recv_timeout_ms=60_000, expires=60)
    record = record_at(uas, "alice")
    [line] = watch(svc.control_socket, record, "dialog", 1)
    assert line["kind"] == "status" and line["state"] == "active"
    document = line["document"]
    assert isinstance(document, dict)
    assert (document["type"], document["entity"]) == ("dialog-info", record)
    assert [d["state"] for d in document["dialogs"]] == ["confirmed"]
    uas.expect_success(timeout=15)


def test_watch_of_a_resource_list_prints_one_line_per_resource(service, sipp_uas):
    svc = service(shards=1)
    uas = sipp_uas("uas_rlmi", recv_timeout_ms=60_000, expires=60)
    the_list = record_at(uas, "friends")
    lines = watch(svc.control_socket, the_list, "presence", 3)
    assert [(x["list"], x["resource"], x["state"], x["basic"]) for x in lines] == [
        (the_list, "sip:bob@example.com", "active", "open"),
        (the_list, "sip:carol@example.com", "pending", None),
        (the_list, "sip:carol@example.com", "terminated", None),
    ]
