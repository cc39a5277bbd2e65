"""The generated parts of the state machine's documentation match the rows.

When one fails, run scripts/gen-state-machine-doc and commit what it writes.
"""

from __future__ import annotations

from pathlib import Path

from presence_b2b.shard import machine_doc
from presence_b2b.shard.transitions import LABELS, ROWS

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "subscription-state-machine.md"
DOT = ROOT / "docs" / "img" / "subscription-states.dot"


def test_the_transition_table_in_the_doc_is_generated_from_the_rows() -> None:
    assert machine_doc.generated_part(DOC.read_text(encoding="utf-8")) == machine_doc.table()


def test_the_state_diagram_source_is_generated_from_the_rows() -> None:
    assert DOT.read_text(encoding="utf-8") == machine_doc.dot()


def test_every_guard_and_action_has_a_label_for_the_doc() -> None:
    unlabelled = [
        fn.__name__
        for row in ROWS
        for fn in (*row.actions, *([row.guard] if row.guard else []))
        if fn not in LABELS
    ]
    assert unlabelled == []


def test_splicing_keeps_the_prose_around_the_markers() -> None:
    doc = f"before\n{machine_doc.BEGIN}\nold\n{machine_doc.END}\nafter\n"
    out = machine_doc.splice(doc, "new\n")
    assert out.startswith("before\n") and out.endswith("after\n")
    assert machine_doc.generated_part(out) == "new\n"
