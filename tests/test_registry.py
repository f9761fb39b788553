"""The upload registry: what it remembers, and that a damaged one never stops the uploader."""

from __future__ import annotations

from pathlib import Path

from msi_tui.engine.events import Notice
from msi_tui.engine.registry import Registry
from tests.helpers import Recorder


def test_only_a_fully_acknowledged_version_counts_as_done(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite3", "b:9092/t", tmp_path, Recorder())
    reg.mark("a.trc", 10, 111, "1" * 32, 16384, "sending")
    assert not reg.is_done("a.trc", 10, 111)
    assert reg.unfinished("a.trc") == ("1" * 32, 10, 16384)
    reg.mark("a.trc", 10, 111, "1" * 32, 16384, "done")
    assert reg.is_done("a.trc", 10, 111)
    assert not reg.is_done("a.trc", 10, 222)  # changed since: send again
    assert reg.unfinished("a.trc") is None
    other = Registry(tmp_path / "r.sqlite3", "b:9092/other-topic", tmp_path, Recorder())
    assert not other.is_done("a.trc", 10, 111)  # another destination has its own memory


def test_a_corrupt_registry_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    sink = Recorder()
    reg = Registry(db, "b:9092/t", tmp_path, sink)
    reg.mark("x", 1, 1, "2" * 32, 16384, "done")
    assert reg.is_done("x", 1, 1)
    notices = sink.of(Notice)
    assert notices and "unreadable" in notices[0].message
    assert list(tmp_path.glob("r.sqlite3.corrupt-*"))
