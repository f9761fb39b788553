"""A file whose name is not UTF-8 is followed to its destination like any other: verified,
written down as such, and moved away by --after-verified."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from msi_tui.engine import followup
from msi_tui.engine.events import FileVerified
from msi_tui.engine.followup import Cleanup
from msi_tui.paths import state_dir
from tests.helpers import Recorder, reconstructing, start_uploader, stop_uploader, wait_until
from tests.test_upload_abort import make_topic

NAME = b"caf\xe9.txt"  # Latin-1, as older Windows software writes


@pytest.mark.kafka
def test_a_name_that_is_not_utf8_is_verified_and_moved_away(kafka_bootstrap: str, topic: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(followup, "CLEANUP_MIN_AGE_S", 0.0)
    make_topic(kafka_bootstrap, topic)
    folder, out, done = tmp_path / "in", tmp_path / "out", tmp_path / "done"
    folder.mkdir()
    source = os.path.join(os.fsencode(folder), NAME)
    with open(source, "wb") as f:
        f.write(b"Messwerte\n")
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder, cleanup=Cleanup("move", done))
    try:
        with reconstructing(kafka_bootstrap, topic, out):
            [verified] = wait_until(lambda: sink.of(FileVerified), "the file verified", timeout=60)
        moved = os.path.join(os.fsencode(done), NAME)
        wait_until(lambda: os.path.exists(moved), "the verified file moved away")
    finally:
        stop_uploader(uploader)
    assert verified.path == "caf\\xe9.txt" and verified.saved_as == "caf\\xe9.txt"
    with open(moved, "rb") as f, open(os.path.join(os.fsencode(out), NAME), "rb") as g:
        assert f.read() == g.read() == b"Messwerte\n"
    assert not os.path.exists(source)
    db = sqlite3.connect(state_dir() / "uploads.sqlite3")
    [(state, where)] = db.execute("SELECT state, saved_as FROM sends WHERE upload_id=?", (verified.upload_id,))
    assert state == "verified" and where.endswith("caf\\xe9.txt")
