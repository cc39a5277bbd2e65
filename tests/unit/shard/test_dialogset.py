"""NOTIFY matching and validation in the dialog set, without an engine."""

from __future__ import annotations

import random

from presence_b2b.shard.call_id import label
from presence_b2b.shard.dialogset import DialogSet
from presence_b2b.shard.observer import RecordingObserver
from presence_b2b.shard.subscription import MachineParams, NotifyInfo, State
from presence_b2b.shard.usage import RestingUsage, Usage, rest
from presence_b2b.sip.dialog import Dialog
from presence_b2b.sip.message import Request

from presence_b2b.id_map import IdMap
from presence_b2b.packed_map import PackedIdMap

RECORD = "sip:alice@127.0.0.1:5090"


OURS = f"{label(1)}0123456789abcdef0123456789abcdef@127.0.0.1"


def _set(call_id: str = "cid") -> tuple[DialogSet, Usage, RecordingObserver]:
    obs = RecordingObserver()
    usages: IdMap[Usage | RestingUsage] = IdMap()
    dialogs = DialogSet(obs, usages, rest_data=PackedIdMap())
    usage = Usage(1, RECORD, "sip:bob@x", MachineParams(), rng=random.Random(0))
    usage.dialog = Dialog(
        call_id=call_id, local_tag="ours", local_uri="sip:bob@x", remote_uri=RECORD,
        remote_target=RECORD,
    )
    usages[1] = usage
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


def _answer(dialogs: DialogSet, n: Request) -> tuple[int, str, Usage | None, object]:
    first = n.first_values()
    return dialogs.match_notify(n, first, dialogs.find(first["Call-ID"]))


def _rested(dialogs: DialogSet, usage: Usage) -> RestingUsage | None:
    """``usage`` (its dialog confirmed) settled with a timer armed, at rest."""
    usage.state = usage.counted = State.CONFIRMED
    usage.deadline = usage.armed_at = 100.0
    usage.timer_seq = 1
    assert dialogs._rest_data is not None
    return rest(usage, dialogs._rest_data)


def _match(dialogs: DialogSet, n: Request) -> tuple[int, bool]:
    code, _, usage, _ = _answer(dialogs, n)
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
    code, _, _, info = _answer(dialogs, _notify(5))
    assert code == 200 and isinstance(info, NotifyInfo) and not info.in_order


def test_notifies_with_the_same_subscription_state_share_one_notify_info() -> None:
    dialogs, _, _ = _set()
    a = _answer(dialogs, _notify(2))[3]
    b = _answer(dialogs, _notify(3))[3]
    assert a is b


def test_a_forgotten_dialog_no_longer_matches() -> None:
    dialogs, usage, _ = _set()
    dialogs.forget(usage)
    assert usage.dialog is None and dialogs.by_call_id == 0
    assert _match(dialogs, _notify()) == (481, False)


def test_our_call_id_leads_to_its_dialog_through_the_id_table_alone() -> None:
    dialogs, usage, _ = _set(OURS)
    assert dialogs.by_call_id == 0
    assert dialogs.find(OURS) is usage
    assert _match(dialogs, _notify(**{"Call-ID": OURS})) == (200, True)


def test_a_call_id_naming_our_id_with_other_random_bits_is_481() -> None:
    dialogs, _, _ = _set(OURS)
    forged = f"{label(1)}{'f' * 32}@127.0.0.1"
    assert dialogs.find(forged) is None
    assert _match(dialogs, _notify(**{"Call-ID": forged})) == (481, False)


def test_a_call_id_naming_no_id_of_its_dialog_is_kept_by_call_id() -> None:
    dialogs, usage, _ = _set(f"{label(7)}0123@127.0.0.1")  # restored under id 1
    assert dialogs.by_call_id == 1
    assert dialogs.find(f"{label(7)}0123@127.0.0.1") is usage
    dialogs.forget(usage)
    assert dialogs.by_call_id == 0


def test_a_resting_subscription_is_found_by_the_call_id_it_packed() -> None:
    dialogs, usage, _ = _set(OURS)
    _match(dialogs, _notify(**{"Call-ID": OURS}))
    resting = _rested(dialogs, usage)
    assert resting is not None and dialogs._call_id_of(resting) == OURS
    dialogs._usages[1] = resting
    dialogs.swap(usage, resting)
    assert dialogs.find(OURS) is resting


def test_a_kept_call_id_follows_its_subscription_to_rest_and_back() -> None:
    dialogs, usage, _ = _set()
    _match(dialogs, _notify())
    resting = _rested(dialogs, usage)
    assert resting is not None
    dialogs.swap(usage, resting)
    assert dialogs.find("cid") is resting
    dialogs.swap(resting, None)
    assert dialogs.find("cid") is None and dialogs.by_call_id == 0
