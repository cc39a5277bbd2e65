"""Our Call-IDs name their dialog's id; nothing else does."""

from __future__ import annotations

from presence_b2b.shard.call_id import dialog_id_in, label
from presence_b2b.sip import ids


def test_a_call_id_we_make_names_the_dialog_it_was_made_for() -> None:
    call_id = ids.new_call_id("127.0.0.1", label(123456))
    assert dialog_id_in(call_id) == 123456


def test_two_call_ids_of_one_dialog_differ_in_their_random_bits() -> None:
    assert ids.new_call_id("h", label(5)) != ids.new_call_id("h", label(5))


def test_an_unlabelled_call_id_names_no_dialog() -> None:
    assert dialog_id_in(ids.new_call_id("127.0.0.1")) is None
    assert dialog_id_in("a84b4c76e66710@pc33.atlanta.com") is None


def test_a_label_that_is_not_a_positive_hex_number_names_no_dialog() -> None:
    for call_id in ("zz.1@h", "-5.1@h", "0.1@h", ".1@h", "x" * 40 + ".1@h", ""):
        assert dialog_id_in(call_id) is None, call_id


def test_a_label_longer_than_60_bits_is_not_read() -> None:
    assert dialog_id_in(f"{'f' * 16}.1@h") is None
    assert dialog_id_in(f"{'f' * 15}.1@h") == 2**60 - 1
