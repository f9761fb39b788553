"""What an operator at the instrument is promised: a file rewritten in passes lands whole
under its name with its earlier versions kept, the window between the broker's
acknowledgement and the registry cannot publish a file twice, sources never clash in
silence, the tree arrives like `cp -a`, files go when their settle window ends, and receipts
say which files are verified at the destination (and may then be cleaned up at the source)."""

from __future__ import annotations

import os
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from msi_tui.engine import followup, watch
from msi_tui.engine.events import (
    FileFailedThere,
    FileKeptBoth,
    FileReconstructed,
    FileUploaded,
    FileUploadFailed,
    FileUploadStarted,
    FileVerified,
    Notice,
)
from msi_tui.engine.followup import Cleanup
from msi_tui.engine.upload import Uploader
from msi_tui.paths import state_dir
from tests.helpers import Recorder, reconstructing, start_uploader, stop_uploader, visible, wait_until, write_random
from tests.test_upload_abort import TopicReader, make_topic


def _sent(sink: Recorder, paths: list[str]) -> bool:
    return sink.paths(FileUploaded) == paths


def write_in_passes(path: Path, passes: list[bytes], pause: float) -> None:
    for i, data in enumerate(passes):
        if i:
            time.sleep(pause)  # (the writer's own rhythm, not a wait for the system under test)
        with open(path, "ab") as f:
            f.write(data)


def passes_land_whole(bootstrap: str, topic: str, tmp_path: Path, quick_pause: float, slow_pause: float,
                      **settings: Any) -> Uploader:
    """Three passes `quick_pause` apart (closer than the uploader waits for a file to settle)
    are sent once, whole; three `slow_pause` apart are sent as three versions, the newest
    rebuilt under the name and the earlier ones kept beside it. Here and in test_portable
    (polled, with its own timing); returns the stopped uploader for their own checks."""
    make_topic(bootstrap, topic)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    sink = Recorder()
    uploader = start_uploader(bootstrap, topic, sink, folder, **settings)
    try:
        quick = [os.urandom(20_000) for _ in range(3)]
        write_in_passes(folder / "quick.trc", quick, quick_pause)
        wait_until(lambda: sink.paths(FileUploaded) == ["quick.trc"], "the quick writer's file sent")
        slow = [os.urandom(30_000) for _ in range(3)]
        write_in_passes(folder / "slow.trc", slow, slow_pause)
        wait_until(lambda: sink.paths(FileUploaded).count("slow.trc") == 3, "every version of the slow file sent")
        with reconstructing(bootstrap, topic, out) as rebuilt:
            wait_until(lambda: len(rebuilt.of(FileReconstructed)) == 4, "every upload rebuilt", timeout=60)
    finally:
        stop_uploader(uploader)
    assert sink.paths(FileUploadStarted).count("quick.trc") == 1
    assert (out / "quick.trc").read_bytes() == b"".join(quick)
    assert (out / "slow.trc").read_bytes() == b"".join(slow) == (folder / "slow.trc").read_bytes()
    earlier = {(out / name).read_bytes() for name in ("slow (2).trc", "slow (3).trc")}
    assert earlier == {slow[0], slow[0] + slow[1]}
    assert visible(out) == ["quick.trc", "slow (2).trc", "slow (3).trc", "slow.trc"]
    kept = [e for e in rebuilt.of(FileKeptBoth) if e.rewrite]
    assert len(kept) == 2 and all(e.source == uploader.settings.source for e in kept)
    # Like cp -a: the modification time is the source's.
    assert (out / "slow.trc").stat().st_mtime_ns == (folder / "slow.trc").stat().st_mtime_ns
    return uploader


@pytest.mark.kafka
def test_a_file_written_in_passes_lands_whole_under_its_name_and_earlier_versions_are_kept(
        kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    passes_land_whole(kafka_bootstrap, topic, tmp_path, quick_pause=0.2, slow_pause=2.0, settle_seconds=1.5)


@pytest.mark.kafka
def test_an_older_version_that_arrives_last_does_not_take_the_name(kafka_bootstrap: str, topic: str,
                                                                   tmp_path: Path) -> None:
    """Versions travel in different partitions: the modification time, not the arrival, decides."""
    make_topic(kafka_bootstrap, topic)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    old, new = os.urandom(5000), os.urandom(6000)
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder, settle_seconds=0.1)
    try:
        (folder / "a.trc").write_bytes(new)
        wait_until(lambda: len(sink.of(FileUploaded)) == 1, "the new version sent")
        (tmp_path / "a.trc").write_bytes(old)
        os.utime(tmp_path / "a.trc", ns=(0, 1_000_000_000))  # an earlier version, older by its time
        os.replace(tmp_path / "a.trc", folder / "a.trc")
        wait_until(lambda: len(sink.of(FileUploaded)) == 2, "the old version sent after it")
    finally:
        stop_uploader(uploader)
    with reconstructing(kafka_bootstrap, topic, out) as rebuilt:
        wait_until(lambda: len(rebuilt.of(FileReconstructed)) == 2, "both rebuilt", timeout=60)
    assert (out / "a.trc").read_bytes() == new and (out / "a (2).trc").read_bytes() == old


def sends(state: Path) -> sqlite3.Connection:
    return sqlite3.connect(state / "uploads.sqlite3", isolation_level=None)


@pytest.mark.kafka
def test_an_uploader_killed_between_acknowledgement_and_registry_does_not_send_the_file_twice(
        kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    make_topic(kafka_bootstrap, topic)
    folder = tmp_path / "in"
    folder.mkdir()
    write_random(folder / "sent.trc", 50_000, seed=1)
    write_random(folder / "cut.trc", 50_000, seed=2)
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder)
    try:
        wait_until(lambda: len(sink.of(FileUploaded)) == 2, "both files sent")
    finally:
        stop_uploader(uploader)
    ids = {e.path: e.upload_id for e in sink.of(FileUploaded)}
    # As the registry stands after a kill at the worst line: both files' end records were
    # produced (state `ending`), the broker acknowledged them, and nothing more was written.
    # For `cut.trc` the registry names another upload id, whose end never reached the topic.
    db = sends(state_dir())
    db.execute("UPDATE sends SET state='ending' WHERE upload_id IN (?, ?)", (ids["sent.trc"], ids["cut.trc"]))
    db.execute("UPDATE sends SET upload_id=? WHERE upload_id=?", ("c" * 32, ids["cut.trc"]))
    db.execute("DELETE FROM uploads WHERE relpath IN ('sent.trc', 'cut.trc')")
    db.close()

    again = Recorder()
    restarted = start_uploader(kafka_bootstrap, topic, again, folder)
    try:
        wait_until(lambda: again.paths(FileUploaded) == ["cut.trc"], "the file whose end was not found sent again")
        wait_until(restarted.idle, "the uploader idle")
    finally:
        stop_uploader(restarted)
    assert "sent.trc" not in again.paths(FileUploadStarted)
    told = " ".join(n.message for n in again.of(Notice))
    assert "1 upload an earlier run left unrecorded had reached the topic whole" in told
    assert "withdrawing 1 unfinished upload" in told
    reader = TopicReader(kafka_bootstrap, topic)
    try:
        records = reader.read_all()
    finally:
        reader.close()
    ends = [dict(r.headers)[("msi.path")] for r in records if r.kind == "end"]
    assert sorted(ends) == [b"cut.trc", b"cut.trc", b"sent.trc"]  # sent.trc once only
    assert [r.upload_id for r in records if r.kind == "abort"] == ["c" * 32]


@pytest.mark.kafka
@pytest.mark.parametrize("by_source", [False, True], ids=["one-tree", "by-source"])
def test_two_sources_writing_the_same_path_never_clash_in_silence(kafka_bootstrap: str, topic: str, tmp_path: Path,
                                                                   by_source: bool) -> None:
    make_topic(kafka_bootstrap, topic)
    out = tmp_path / "out"
    data: dict[str, bytes] = {}
    for source in ("scope-a", "scope-b"):
        folder = tmp_path / source
        write_random(folder / "run001" / "trace_01.trc", 30_000, seed=len(data))
        data[source] = (folder / "run001" / "trace_01.trc").read_bytes()
        sink = Recorder()
        uploader = start_uploader(kafka_bootstrap, topic, sink, folder, source=source)
        try:
            wait_until(partial(_sent, sink, ["run001/trace_01.trc"]), f"{source}'s file sent")
        finally:
            stop_uploader(uploader)
    with reconstructing(kafka_bootstrap, topic, out, by_source=by_source) as rebuilt:
        wait_until(lambda: len(rebuilt.of(FileReconstructed)) == 2, "both rebuilt", timeout=60)
    assert sorted(e.source for e in rebuilt.of(FileReconstructed)) == ["scope-a", "scope-b"]
    if by_source:
        for source in data:
            assert (out / source / "run001" / "trace_01.trc").read_bytes() == data[source]
        assert not rebuilt.of(FileKeptBoth)
        return
    [clash] = rebuilt.of(FileKeptBoth)
    assert (clash.source, clash.other_source, clash.rewrite) == ("scope-b", "scope-a", False)
    assert (out / "run001" / "trace_01.trc").read_bytes() == data["scope-a"]
    assert (out / "run001" / "trace_01 (2).trc").read_bytes() == data["scope-b"]


@pytest.mark.kafka
def test_the_tree_arrives_like_cp_a_and_an_unreadable_folder_is_reported(
        kafka_bootstrap: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_topic(kafka_bootstrap, topic)
    folder, out = tmp_path / "in", tmp_path / "out"
    (folder / "empty" / "deeper").mkdir(parents=True)
    (folder / "locked").mkdir()
    write_random(folder / "locked" / "hidden.trc", 1000)
    write_random(folder / "data" / "a.trc", 20_000)
    os.utime(folder / "data" / "a.trc", ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    # The tests run as root, whom permissions do not stop: the folder is made unreadable
    # where the watcher lists it.
    real_scandir = os.scandir

    def scandir(path):
        if os.fsdecode(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder)
    try:
        wait_until(lambda: sink.paths(FileUploaded) == ["data/a.trc"], "the readable file sent")
        [failed] = wait_until(lambda: sink.of(FileUploadFailed), "the unreadable folder reported")
        wait_until(uploader.idle, "the uploader idle")
        with reconstructing(kafka_bootstrap, topic, out):
            wait_until(lambda: (out / "empty" / "deeper").is_dir() and (out / "data" / "a.trc").exists(),
                       "the tree rebuilt", timeout=60)
    finally:
        stop_uploader(uploader)
    assert (failed.path, "Permission denied" in failed.reason) == ("locked/", True)
    assert uploader.snapshot().files_failed == 1
    assert (out / "data" / "a.trc").stat().st_mtime_ns == 1_600_000_000_123_456_789
    assert not (out / "locked" / "hidden.trc").exists()


def test_a_closed_file_is_due_when_its_settle_window_ends_not_at_a_tick(tmp_path: Path) -> None:
    ready: list[str] = []
    watcher = watch.FolderWatcher(tmp_path, lambda _p, rel, _s, _m: ready.append(rel), Recorder(),
                                  settle_seconds=0.25)
    (tmp_path / "a.trc").write_bytes(b"x")
    watcher._observe(tmp_path / "a.trc", "created")
    watcher._observe(tmp_path / "a.trc", "modified")
    assert watcher._release_ready() == float("inf")  # open for writing: its close decides
    watcher._observe(tmp_path / "a.trc", "closed")
    due = watcher._release_ready()
    assert ready == [] and abs(due - (watcher._candidates["a.trc"].changed_at + 0.25)) < 1e-9
    wait_until(lambda: time.monotonic() >= due, "the settle window to end", every=0.01)
    assert watcher._release_ready() == float("inf") and ready == ["a.trc"]


@pytest.mark.kafka
def test_receipts_say_which_files_are_verified_and_only_those_are_moved_away(
        kafka_bootstrap: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(followup, "CLEANUP_MIN_AGE_S", 0.0)
    make_topic(kafka_bootstrap, topic)
    folder, out, done = tmp_path / "in", tmp_path / "out", tmp_path / "done"
    folder.mkdir()
    out.mkdir()
    (out / "blocked").write_bytes(b"a file where the far side needs a folder")
    write_random(folder / "run" / "good.trc", 40_000, seed=3)
    good = (folder / "run" / "good.trc").read_bytes()
    write_random(folder / "blocked" / "bad.trc", 1000, seed=4)
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder, cleanup=Cleanup("move", done),
                              receipt_timeout_s=1.0)
    try:
        wait_until(lambda: len(sink.of(FileUploaded)) == 2, "both files sent")
        warning = wait_until(lambda: [n for n in sink.of(Notice) if "without a receipt" in n.message],
                             "a warning that no receipt came")
        assert "2 files delivered over 1 s ago" in warning[0].message
        with reconstructing(kafka_bootstrap, topic, out):
            [verified] = wait_until(lambda: sink.of(FileVerified), "the good file verified", timeout=60)
            [failed] = wait_until(lambda: sink.of(FileFailedThere), "the bad file failed there", timeout=60)
        wait_until(lambda: (done / "run" / "good.trc").exists(), "the verified file moved away")
        snap = uploader.snapshot()
        assert (snap.files_verified, snap.files_failed_there, snap.awaiting_receipt) == (1, 1, 0)
        states = {f.path: (f.state, f.where) for f in snap.files}
    finally:
        stop_uploader(uploader)
    assert (verified.path, verified.saved_as) == ("run/good.trc", "run/good.trc")
    assert verified.output == str(out.absolute())
    assert states["run/good.trc"][0] == "verified" and states["run/good.trc"][1].endswith("out/run/good.trc")
    assert (failed.path, failed.outcome) == ("blocked/bad.trc", "quarantined")
    assert states["blocked/bad.trc"][0] == "quarantined there"
    assert (done / "run" / "good.trc").read_bytes() == good == (out / "run" / "good.trc").read_bytes()
    assert not (folder / "run" / "good.trc").exists() and (folder / "blocked" / "bad.trc").exists()
