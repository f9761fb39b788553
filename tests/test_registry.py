"""The upload registry: what it remembers, and that a damaged one never stops the uploader."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from msi_tui.engine.events import Notice
from msi_tui.engine.registry import Registry
from tests.helpers import Recorder


def test_only_a_fully_acknowledged_version_counts_as_done(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite3", "b:9092/t", tmp_path, Recorder())
    reg.mark("a.trc", 10, 111, "1" * 32, 16384, "sending")
    assert not reg.is_done("a.trc", 10, 111)
    reg.mark("a.trc", 10, 111, "1" * 32, 16384, "done")
    assert reg.is_done("a.trc", 10, 111)
    assert not reg.is_done("a.trc", 10, 222)  # changed since: send again
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


def test_unfinished_uploads_are_taken_over_once_and_only_from_uploaders_that_are_gone(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    killed = Registry(db, "b:9092/t", None, Recorder())
    killed.begin("a" * 32, "x.trc", 100, 1, 16384, "sha256", 0, False)
    killed.begin("b" * 32, "y.trc", 5, 1, 1024, "xxh128", 0, False)
    killed.finish("b" * 32, "done")
    running = Registry(db, "b:9092/t", None, Recorder())
    running.begin("c" * 32, "z.trc", 7, 1, 16384, "xxh128", 0, False)
    elsewhere = Registry(db, "b:9092/other-topic", None, Recorder())
    elsewhere.begin("d" * 32, "w.trc", 7, 1, 16384, "xxh128", 0, False)

    starting = Registry(db, "b:9092/t", tmp_path, Recorder())
    assert starting.take_over_unfinished() == []  # their uploaders are still running
    os.close(killed._owner_fd)  # as if its process had died: the kernel lets go of its lock
    assert [u[:6] for u in starting.take_over_unfinished()] == [("a" * 32, "x.trc", 100, 16384, "sha256", "sending")]
    assert starting.take_over_unfinished() == []  # ours now, and we are alive
    again = Registry(db, "b:9092/t", None, Recorder())
    assert again.take_over_unfinished() == []  # another start while the first one runs
    starting.finish("a" * 32, "withdrawn")
    starting.close()
    assert again.take_over_unfinished() == []  # withdrawn: never aborted twice


def test_a_registry_of_the_earlier_schema_hands_over_its_unfinished_uploads(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    old = sqlite3.connect(db)
    old.execute(SCHEMA_0)
    old.execute("INSERT INTO uploads VALUES ('b:9092/t', '/data', 'a.trc', 10, 1, ?, 16384, 'sending', 0)", ("1" * 32,))
    old.execute("INSERT INTO uploads VALUES ('b:9092/t', '/data', 'b.trc', 10, 1, ?, 16384, 'done', 0)", ("2" * 32,))
    old.commit()
    old.close()
    reg = Registry(db, "b:9092/t", Path("/data"), Recorder())
    assert reg.is_done("b.trc", 10, 1)
    taken = reg.take_over_unfinished()
    assert [u[:6] for u in taken] == [("1" * 32, "a.trc", 10, 16384, "xxh128", "sending")]
    assert taken[0].partition == -1  # placed by Kafka's partitioner: its abort is too
    reg.close()
    assert [u[:5] for u in Registry(db, "b:9092/t", Path("/data"), Recorder()).take_over_unfinished()] == [
        ("1" * 32, "a.trc", 10, 16384, "xxh128")]  # not withdrawn yet: the next start tries again


def test_names_that_are_not_utf8_are_kept_with_their_bytes(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    name = b"caf\xe9/\xff.trc".decode("utf-8", "surrogateescape")
    reg = Registry(db, "b:9092/t", tmp_path, Recorder())
    reg.mark(name, 3, 4, "e" * 32, 16384, "done")
    assert reg.is_done(name, 3, 4) and not reg.is_done("caf\\xe9/\\xff.trc", 3, 4)
    reg.begin("f" * 32, name, 3, 4, 16384, "xxh128", 2, True)
    reg.finish("f" * 32, "ending")
    os.close(reg._owner_fd)
    taken = Registry(db, "b:9092/t", tmp_path, Recorder()).take_over_unfinished()
    assert [(u.relpath, u.state, u.partition, u.mtime_ns, u.folder) for u in taken] == [
        (name, "ending", 2, 4, str(tmp_path.resolve()))]


SCHEMA_0 = """CREATE TABLE uploads (destination TEXT NOT NULL, folder TEXT NOT NULL, relpath TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, upload_id TEXT NOT NULL, chunk_size INTEGER NOT NULL,
    state TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (destination, folder, relpath))"""


def test_lock_files_of_uploaders_gone_are_cleared_and_live_ones_kept(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    live = Registry(db, "b:9092/t", None, Recorder())
    owners = db.with_name(db.name + ".owners")
    gone = owners / ("f" * 32)
    gone.touch()
    for path in (gone, owners / live.owner):
        os.utime(path, (0, 0))  # both older than the sweep's bound
    Registry(db, "b:9092/t", None, Recorder())
    assert not gone.exists() and (owners / live.owner).exists()
