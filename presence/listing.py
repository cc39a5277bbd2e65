"""A resource list's states as what a consumer is told: one status per resource.

RFC 4662 NOTIFYs describe many resources at once; consumers of the QSA API ask
for one (record, subscriber) and read statuses, so each resource instance a
list NOTIFY names becomes a status of its own, tagged with the list and the
resource (``Status.list``, ``Status.resource``). Old clients that do not know
those fields still read a valid presence status per resource.
"""

from __future__ import annotations

from typing import Final

from .body import media_type
from .resourcelist import ResourceState
from .status import Status, SubscriptionState

__all__ = ["LIST_MEDIA_TYPE", "is_list_body", "resource_status"]

LIST_MEDIA_TYPE: Final = "multipart/related"
_STATES: Final = {s.value: s for s in SubscriptionState}


def is_list_body(content_type: str) -> bool:
    """The body is a list notification (``multipart/related``, RFC 4662 §5).
    Asked of every NOTIFY: the cheap prefix test settles nearly all of them."""
    return content_type[:9].lower() == "multipart" and media_type(content_type) == LIST_MEDIA_TYPE


def resource_status(sub_id: int, resource: ResourceState) -> Status:
    """The status of one resource instance. A resource with no instance yet is
    ``pending``; one the list no longer has is ``terminated`` with reason
    ``removed`` (unless the list gave one)."""
    if resource.removed:
        state, reason = SubscriptionState.TERMINATED, resource.reason or "removed"
    else:
        state = _STATES.get(resource.state, SubscriptionState.PENDING)
        reason = resource.reason
    return Status(
        sub_id,
        state,
        reason,
        presentity=resource.presentity,
        content_type=resource.content_type,
        body=resource.body,
        error=resource.error,
        document=resource.document,
        list=resource.list_uri,
        resource=resource.uri,
    )
