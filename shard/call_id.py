"""Our Call-IDs lead to their dialog's id.

A Call-ID this shard makes is ``<dialog id, hex>.<128 random bits>@<host>``:
a NOTIFY is matched through the engine's table of subscriptions by id, and
the shard keeps no index by Call-ID (a dict entry and a str of ~96 bytes per
dialog, a million dialogs). The random part keeps the Call-ID unguessable;
the id only says where to look, and the whole Call-ID must still be equal.
A Call-ID in any other form (a dialog restored from the store under another
id, another host's, a peer's invention) names no id, and the dialog set keeps
such dialogs in a small dict of their own.

The id tells a notifier how many dialogs this shard has set up: nothing a
subscriber's server does not see anyway from the rate of SUBSCRIBEs.
"""

from __future__ import annotations

__all__ = ["dialog_id_in", "label"]

#: The longest id label read: 15 hex digits, so that an id taken from a stored
#: Call-ID (a dialog restored under its old id) stays far below 2**63, which
#: the tables of ids hold as 64-bit signed numbers.
_LABEL_MAX = 15


def label(did: int) -> str:
    """What a Call-ID of dialog ``did`` starts with."""
    return f"{did:x}."


def dialog_id_in(call_id: str) -> int | None:
    """The dialog id a Call-ID names, or None for one that names none."""
    dot = call_id.find(".", 1, _LABEL_MAX + 1)
    if dot < 0:
        return None
    try:
        did = int(call_id[:dot], 16)
    except ValueError:
        return None
    return did if did > 0 else None
