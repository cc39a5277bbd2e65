"""A real peer whose port was taken between choosing and binding moves to another one."""

from __future__ import annotations

import pytest

from tests.peers import ports
from tests.peers.ports import BIND_ATTEMPTS, start_with_port_retries


class Peer:
    """Fails to bind its first ``taken`` starts, then binds."""

    def __init__(self, taken: int) -> None:
        self.taken = taken
        self.starts = 0
        self.ports: list[int] = []

    def start(self) -> bool:
        self.starts += 1
        return self.starts > self.taken

    def move_to(self, port: int) -> None:
        self.ports.append(port)


@pytest.fixture(autouse=True)
def numbered_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = iter(range(40000, 40100))
    monkeypatch.setattr(ports, "free_udp_port", lambda: next(fresh))


def test_a_peer_on_a_taken_port_is_moved_to_a_new_port_and_started_again() -> None:
    peer = Peer(taken=2)
    assert start_with_port_retries(peer.start, peer.move_to)
    assert peer.starts == 3
    assert peer.ports == [40000, 40001]


def test_a_peer_that_binds_at_once_stays_where_it_is() -> None:
    peer = Peer(taken=0)
    assert start_with_port_retries(peer.start, peer.move_to)
    assert (peer.starts, peer.ports) == (1, [])


def test_a_port_the_caller_chose_is_tried_once() -> None:
    peer = Peer(taken=1)
    assert not start_with_port_retries(peer.start, None)
    assert peer.starts == 1


def test_the_retries_end_after_a_bounded_number_of_ports() -> None:
    peer = Peer(taken=BIND_ATTEMPTS)
    assert not start_with_port_retries(peer.start, peer.move_to)
    assert peer.starts == BIND_ATTEMPTS
