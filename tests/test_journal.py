"""The journal of published uploads: what a replay skips."""

from __future__ import annotations

from pathlib import Path

from msi_tui.engine.journal import Journal


def test_added_uploads_are_seen_before_and_after_the_flush_and_survive_a_restart(tmp_path: Path) -> None:
    db, out = tmp_path / "state" / "j.sqlite3", tmp_path / "out"
    journal = Journal(db, out, "group-a")
    journal.add("a" * 32, "x.bin")
    assert journal.seen("a" * 32)  # pending, not yet written
    journal.flush()
    journal.add("b" * 32, "y.bin")
    journal.close()  # writes what is still pending
    again = Journal(db, out, "group-a")
    assert again.seen("a" * 32) and again.seen("b" * 32)
    assert not again.seen("c" * 32)
    other_group = Journal(db, out, "group-b")
    assert not other_group.seen("a" * 32)  # a new group id rebuilds from the start
    again.close()
    other_group.close()


def test_a_failing_write_loses_only_the_entries(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3", tmp_path / "out", "g")
    journal.add("a" * 32, "x.bin")
    journal._db.execute("DROP TABLE published")  # the write below cannot succeed
    journal.flush()  # not raised: a lost entry only costs re-checking a replay
    assert not journal._db.in_transaction
    journal.close()
