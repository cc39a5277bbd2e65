"""Messages and documents are plain values the garbage collector need not watch.

A shard keeps a status per dialog (a million of them) and makes several per
NOTIFY. None of these structs can be part of a reference cycle (they hold
strings, numbers, bytes and tuples of other such structs), so they are made
with ``gc=False``: 16 bytes less each, and no collector pass walks them or is
triggered by their allocation.
"""

from __future__ import annotations

import gc
import importlib
import inspect

import msgspec
import pytest
from presence_b2b.presence.status import Status, SubscriptionState

MODULES = (
    "presence_b2b.ipc.channel",
    "presence_b2b.ipc.messages",
    "presence_b2b.presence.dialoginfo",
    "presence_b2b.presence.document",
    "presence_b2b.presence.multipart",
    "presence_b2b.presence.reginfo",
    "presence_b2b.presence.resourcelist",
    "presence_b2b.presence.rlmi",
    "presence_b2b.presence.status",
    "presence_b2b.presence.summary",
    "presence_b2b.presence.watcherinfo",
)


def _structs() -> list[type[msgspec.Struct]]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, msgspec.Struct) and obj.__module__ == name:
                found.append(obj)
    return found


@pytest.mark.parametrize("struct", _structs(), ids=lambda s: s.__name__)
def test_a_message_or_document_struct_is_not_watched_by_the_garbage_collector(
    struct: type[msgspec.Struct],
) -> None:
    assert struct.__struct_config__.gc is False


def test_a_status_with_a_body_is_not_tracked() -> None:
    status = Status(1, SubscriptionState.ACTIVE, body=b"<presence/>", content_type="x/y")
    assert not gc.is_tracked(status)
    assert not gc.is_tracked(msgspec.structs.replace(status, id=2))
