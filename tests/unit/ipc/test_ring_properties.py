"""Property tests: FIFO order, byte accounting and the wrap under random traffic."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from presence_b2b.ipc.ring import Ring, record_size

MAX = 4096 // 2 - 8
payloads = st.integers(0, MAX).map(lambda n: bytes([n % 251]) * n)


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, MAX), min_size=1, max_size=60),
    max_records=st.integers(1, 5),
    max_bytes=st.integers(0, 5000),
)
def test_random_sizes_across_the_wrap_come_out_in_order(
    sizes: list[int], max_records: int, max_bytes: int
) -> None:
    with Ring.create(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        sent = [i.to_bytes(2, "little") * (n // 2) for i, n in enumerate(sizes)]
        got: list[bytes] = []
        pending = list(sent)
        while pending:
            n = writer.write_batch(pending)
            pending = pending[n:]
            batch = reader.read_batch(max_records, max_bytes)
            assert len(batch) <= max_records
            assert len(batch) <= 1 or sum(record_size(len(b)) for b in batch) <= max_bytes
            got += batch
        while batch := reader.read_batch():
            got += batch
        assert got == sent
        assert reader.bad_records == 0


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, MAX), st.integers(0, 3)), min_size=1, max_size=60))
def test_a_write_is_refused_only_when_the_record_and_its_padding_do_not_fit(
    steps: list[tuple[int, int]],
) -> None:
    cap = 4096
    with Ring.create(cap) as ring:
        writer, reader = ring.writer(), ring.reader()
        head = 0
        for n, reads in steps:
            free = writer.free_bytes()
            size = record_size(n)
            room = cap - head % cap
            need = size if size <= room else room + size
            assert writer.try_write(b"x" * n) == (need <= free)
            if need <= free:
                head += need
            for _ in range(reads):
                reader.read_batch(1)


class RingModel(RuleBasedStateMachine):
    """The ring against a deque: same records, same order, same byte counts."""

    def __init__(self) -> None:
        super().__init__()
        self.ring = Ring.create(4096)
        self.writer = self.ring.writer()
        self.reader = self.ring.reader()
        self.model: deque[bytes] = deque()
        self.read_count = 0

    @rule(payload=payloads)
    def try_write(self, payload: bytes) -> None:
        before = self.writer.free_bytes()
        if self.writer.try_write(payload):
            self.model.append(payload)
        else:
            assert before < 2 * record_size(len(payload))  # full, or would need padding

    @rule(batch=st.lists(payloads, max_size=8))
    def write_batch(self, batch: list[bytes]) -> None:
        n = self.writer.write_batch(batch)
        assert 0 <= n <= len(batch)
        self.model.extend(batch[:n])
        if n < len(batch):
            assert self.writer.free_bytes() < 2 * record_size(len(batch[n]))

    @rule(limit=st.integers(1, 10))
    def read_batch(self, limit: int) -> None:
        got = self.reader.read_batch(limit)
        expected = [self.model.popleft() for _ in range(min(limit, len(self.model)))]
        assert got == expected
        self.read_count += len(got)

    @precondition(lambda self: not self.model)
    @rule()
    def empty_ring_accepts_the_largest_record(self) -> None:
        big = b"B" * self.ring.max_record
        assert self.writer.try_write(big)
        self.model.append(big)

    @invariant()
    def accounting_matches_the_model(self) -> None:
        depth = self.writer.depth_bytes()
        assert depth >= sum(record_size(len(p)) for p in self.model)
        assert depth <= 4096
        assert self.writer.free_bytes() == 4096 - depth
        assert self.reader.records_read == self.read_count
        assert self.reader.bad_records == 0
        if not self.model:
            assert self.reader.read_batch() == []

    def teardown(self) -> None:
        self.ring.close()


RingModel.TestCase.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)
test_the_ring_behaves_like_a_fifo_queue = RingModel.TestCase
