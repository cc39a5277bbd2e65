"""NOTIFY matching and validation in the dialog set, without an engine."""

from __future__ import annotations

import random

from presence_b2b.shard.dialogset import DialogSet
from presence_b2b.shard.observer import RecordingObserver
from presence_b2b.shard.subscription import MachineParams
from presence_b2b.shard.usage import Usage
from presence_b2b.sip.dialog import Dialog
from presence_b2b.sip.message import Request

RECORD = "sip:alice@127.0.0.1:5090"


def _set() -> tuple[DialogSet, Usage, RecordingObserver]:
    obs = RecordingObserver()
    dialogs = DialogSet(obs)
    usage = Usage(1, RECORD, "sip:bob@x", MachineParams(), rng=random.Random(0))
    usage.dialog = Dialog(
        call_id="cid", local_tag="ours", local_uri="sip:bob@x", remote_uri=RECORD,
        remote_target=RECORD,
    )
    dialogs.add(usage)
    return dialogs, usage, obs


def _notify(cseq: int = 2, **override: str) -> Request:
    n = Request("NOTIFY", "sip:127.0.0.1:5070")
    headers = {
        "Via": "SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK1",
        "From": f"<{RECORD}>;tag=theirs",
        "To": "<sip:bob@x>;tag=ours",
        "Call-ID": "cid",
        "CSeq": f"{cseq} NOTIFY",
        "Event": "presence",
        "Subscription-State": "active;expires=60",
        "Contact": "<sip:127.0.0.1:5090>",
        **override,
    }
    for name, value in headers.items():
        if value:
            n.add(name, value)
    return n


def _match(dialogs: DialogSet, n: Request) -> tuple[int, bool]:
    code, _, usage, _ = dialogs.match_notify(n, n.first_values())
    return code, usage is not None


def test_a_notify_in_our_dialog_matches_and_confirms_it() -> None:
    dialogs, usage, obs = _set()
    assert _match(dialogs, _notify()) == (200, True)
    assert usage.dialog is not None and usage.dialog.remote_tag == "theirs"
    assert obs.counts["notify_received", "active"] == 1


def test_an_unknown_call_id_or_another_local_tag_is_481() -> None:
    dialogs, _, _ = _set()
    assert _match(dialogs, _notify(**{"Call-ID": "other"})) == (481, False)
    assert _match(dialogs, _notify(To="<sip:bob@x>;tag=else")) == (481, False)


def test_another_fork_after_confirmation_is_481() -> None:
    dialogs, _, _ = _set()
    _match(dialogs, _notify())
    assert _match(dialogs, _notify(3, From=f"<{RECORD}>;tag=fork2")) == (481, False)


def test_an_event_id_our_subscribe_did_not_carry_is_481_and_another_package_489() -> None:
    dialogs, _, _ = _set()
    assert _match(dialogs, _notify(Event="presence;id=7")) == (481, False)
    assert _match(dialogs, _notify(Event="dialog")) == (489, False)


def test_a_missing_subscription_state_is_400() -> None:
    dialogs, _, obs = _set()
    assert _match(dialogs, _notify(**{"Subscription-State": ""})) == (400, False)
    assert obs.counts["parse_error", "missing-header"] == 1


def test_a_lower_cseq_is_500_and_a_repeated_one_is_ours_but_late() -> None:
    dialogs, _, _ = _set()
    _match(dialogs, _notify(5))
    assert _match(dialogs, _notify(4)) == (500, False)
    code, _, _, info = dialogs.match_notify(_notify(5), _notify(5).first_values())
    assert code == 200 and info is not None and not info.in_order


def test_notifies_with_the_same_subscription_state_share_one_notify_info() -> None:
    dialogs, _, _ = _set()
    a = dialogs.match_notify(_notify(2), _notify(2).first_values())[3]
    b = dialogs.match_notify(_notify(3), _notify(3).first_values())[3]
    assert a is b


def test_a_forgotten_dialog_no_longer_matches() -> None:
    dialogs, usage, _ = _set()
    dialogs.forget(usage)
    assert usage.dialog is None and len(dialogs) == 0
    assert _match(dialogs, _notify()) == (481, False)
