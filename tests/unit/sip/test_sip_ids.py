"""Identifiers: format, uniqueness, and no sharing across fork."""

from __future__ import annotations

import os

from presence_b2b.sip import ids


def test_branches_start_with_the_rfc_3261_magic_cookie() -> None:
    branch = ids.new_branch()
    assert branch.startswith("z9hG4bK")
    assert len(branch) == len("z9hG4bK") + 24


def test_call_id_is_random_at_host() -> None:
    random_part, host = ids.new_call_id("10.0.0.1").split("@")
    assert host == "10.0.0.1"
    assert len(random_part) == 32
    int(random_part, 16)


def test_tags_carry_64_random_bits() -> None:
    assert len(ids.new_tag()) == 16


def test_identifiers_do_not_repeat_across_pool_refills() -> None:
    seen = {ids.new_tag() for _ in range(50_000)}
    assert len(seen) == 50_000


def test_a_forked_child_does_not_reuse_the_parents_random_bytes() -> None:
    ids.new_tag()  # make sure the parent holds a partly used pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(write, ids.new_tag().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_tag = os.read(read, 64).decode()
    os.close(read)
    assert child_tag != ids.new_tag()
