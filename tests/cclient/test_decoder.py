"""The C client's status decoder against the Python one, on seeded mutated records.

``qsa-decode`` (clients/c) reads framed records and prints, per record, the
``watch --json`` object of what it decoded or ``bad: ...``. Each test feeds it
the same few thousand records: well-formed status and error messages and
seeded mutations of them (bit flips, overwritten, inserted and deleted bytes,
truncations, splices, hostile length and count fields). Run with both builds
(``c_build``), the sanitized one turns any out-of-bounds read, leak or
undefined behaviour into a failure.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
from collections.abc import Iterator

import msgspec
import pytest
from presence_b2b.cli.watch import as_json
from presence_b2b.ipc.client import ClientEvent
from presence_b2b.ipc.messages import ProtocolError, decode_status, encode
from presence_b2b.presence.document import Note, PresenceTuple, Presentity
from presence_b2b.presence.status import Failure, FailureKind, Status

from tests.cclient.build import CBuild

SEED = 20261203
MUTANTS_PER_SEED = 400

SEEDS: list[Status | Failure] = [
    Status(
        id=1,
        state="active",
        presentity=Presentity(entity="sip:b@x", tuples=(PresenceTuple(id="t", basic="open"),)),
        content_type="application/pidf+xml",
        body=b"<p/>",
    ),
    Failure(id=1, kind="sip-error", code=403, detail="Forbidden", retry_in=120.0),
    Failure(id=9, kind="refused", detail="record is not a SIP URI"),
    Failure(id=2**40, kind="too-large", code=-1, retry_in=1e-5),
    Status(id=3, state="pending", reason="reestablishing", merged=12),
    Status(
        id=2**64 - 1,
        state="terminated",
        reason="timeout",
        error="not PIDF: mismatched tag",
        content_type="text/plain; charset=latin-1",
        body=b"caf\xe9 \xf0\x9f\x98\x80 \xed\xa0\x80\x00\x7f",
        presentity=Presentity(
            entity="sip:\u00fc@example.com",
            notes=(Note("au d\u00e9jeuner", "fr"), Note("\U0001f600")),
            extensions=("<x:mood/>",),
            tuples=(
                PresenceTuple(
                    id="a",
                    basic="closed",
                    contact="sip:a@192.0.2.1:5060",
                    priority=0.8,
                    timestamp="2026-12-03T08:00:00Z",
                    notes=(Note("n1"), Note("n2", "en")),
                    extensions=("<e/>",),
                ),
                PresenceTuple(id="b", priority=1e22),
                PresenceTuple(id="c", basic="open", priority=-0.0),
            ),
        ),
    ),
    Status(id=8, state="pending", list="sip:friends@x", resource="sip:bob@x"),
    Status(id=9, state="terminated", reason="noresource", list="sip:friends@x"),
]

INTERESTING = [0x00, 0x7F, 0x80, 0x8F, 0x9F, 0xC0, 0xC1, 0xC4, 0xC6, 0xCB, 0xD9, 0xDB, 0xDD,
               0xDF, 0xFF]  # fmt: skip


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(out)) if out else 0
        if op == 0 and out:
            out[at] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[at] = rng.choice(INTERESTING)
        elif op == 2:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 3 and out:
            del out[at : at + rng.randint(1, 8)]
        elif op == 4:
            del out[rng.randint(0, len(out)) :]
        elif op == 5 and out:  # a length or count field gone huge
            out[at : at + 5] = bytes([rng.choice([0xDB, 0xDD, 0xDF, 0xC6]), 0x7F, 0xFF, 0xFF, 0xFF])
        elif op == 6:
            other = encode(rng.choice(SEEDS))
            start = rng.randrange(len(other))
            out[at:at] = other[start : start + rng.randint(1, 40)]
    return bytes(out)


def records() -> list[bytes]:
    rng = random.Random(SEED)
    seeds = [encode(m) for m in SEEDS]
    out = list(seeds)
    for seed in seeds:
        out.extend(mutate(seed, rng) for _ in range(MUTANTS_PER_SEED))
    out += [b"", b"\x80", b"\xc1", b"\xdf\xff\xff\xff\xff", b"\x91" * 5000 + b"\xc0"]
    return out


def run_decoder(build: CBuild, recs: list[bytes]) -> list[str]:
    framed = b"".join(struct.pack("<I", len(r)) + r for r in recs)
    done = subprocess.run(
        [build.decode], input=framed, capture_output=True, env=build.env(), timeout=120, check=False
    )
    stderr = done.stderr.decode(errors="replace")
    build.check_clean(stderr)
    assert done.returncode == 0, stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == len(recs)
    return lines


def python_line(data: bytes) -> str | None:
    """What ``watch --json`` prints for the record (record, subscriber empty), or None."""
    try:
        msg = decode_status(data)
    except ProtocolError:
        return None
    return json.dumps(as_json(ClientEvent(msg.id, "", "", msg)))


class AnyKindFailure(msgspec.Struct, tag="error", frozen=True):
    """Failure with ``kind`` as a plain string, the way the C client reads it."""

    id: int
    kind: str
    code: int = 0
    detail: str = ""
    retry_in: float | None = None


_lenient: msgspec.msgpack.Decoder[Status | AnyKindFailure] = msgspec.msgpack.Decoder(
    Status | AnyKindFailure
)


def deliberate_difference(data: bytes) -> bool:
    """The documented places where the C decoder differs from the Python one.

    * ``kind`` is an opaque string in C (new kinds decode); msgspec refuses a
      value outside FailureKind.
    * ``id`` and ``merged`` are unsigned 64-bit and ``code`` signed 64-bit in
      C; the Python structs take any msgpack int.
    """
    try:
        msg = _lenient.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    if msg.id < 0:
        return True
    if isinstance(msg, Status):
        return msg.merged < 0
    return msg.kind not in {k.value for k in FailureKind} or not -(2**63) <= msg.code < 2**63


def mismatches(build: CBuild) -> Iterator[str]:
    recs = records()
    for data, line in zip(recs, run_decoder(build, recs), strict=True):
        expected = python_line(data)
        if expected is None and line.startswith("bad: "):
            continue
        if expected == line:
            continue
        if deliberate_difference(data):
            continue
        yield f"{data.hex()}\n  python: {expected}\n  c:      {line}"


def test_decoder_prints_the_python_watch_json_for_every_seed_message(c_build: CBuild) -> None:
    seeds = [encode(m) for m in SEEDS]
    assert run_decoder(c_build, seeds) == [python_line(s) for s in seeds]


def test_decoder_accepts_and_refuses_mutated_records_as_the_python_decoder_does(
    c_build: CBuild,
) -> None:
    found = list(mismatches(c_build))
    assert not found, f"{len(found)} records decoded differently:\n" + "\n".join(found[:10])


def test_decoder_refuses_counts_larger_than_the_record_without_allocating_them(
    c_build: CBuild,
) -> None:
    # A map of 2^32-1 entries and an array of 2^32-1 tuples, in a few bytes.
    huge_map = b"\xdf\xff\xff\xff\xff" + encode("type") + encode("status")
    huge_tuples = (
        b"\x84" + encode("type") + encode("status") + encode("id") + b"\x01"
        + encode("state") + encode("active") + encode("presentity")
        + b"\x82" + encode("entity") + encode("e") + encode("tuples") + b"\xdd\xff\xff\xff\xff"
    )  # fmt: skip
    lines = run_decoder(c_build, [huge_map, huge_tuples])
    assert all(line.startswith("bad: ") for line in lines), lines


@pytest.mark.parametrize("cut", [1, 7, 20, 40])
def test_decoder_refuses_a_message_cut_short(c_build: CBuild, cut: int) -> None:
    whole = encode(SEEDS[0])
    (line,) = run_decoder(c_build, [whole[:-cut]])
    assert line.startswith("bad: ")


def test_decoder_writes_every_float_as_python_repr_does(c_build: CBuild) -> None:
    rng = random.Random(SEED)
    patterns = [rng.getrandbits(64) for _ in range(3000)]
    floats = [struct.unpack("<d", struct.pack("<Q", bits))[0] for bits in patterns]
    floats += [0.0, -0.0, 1e16, 1e15, 1e-4, 1e-5, 0.1, 5e-324, 1.7976931348623157e308, 120.0]
    recs = [encode(Failure(id=1, kind="timeout", retry_in=x)) for x in floats]
    assert run_decoder(c_build, recs) == [python_line(r) for r in recs]


def test_decoder_replaces_bytes_that_are_not_utf8_in_a_body_as_python_does(
    c_build: CBuild,
) -> None:
    rng = random.Random(SEED)
    alphabet = [0x41, 0x7F, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0xA0]
    bodies = [bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    recs = [encode(Status(id=1, state="active", body=body)) for body in bodies]
    assert run_decoder(c_build, recs) == [python_line(r) for r in recs]
