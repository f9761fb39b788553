"""The folder uploader: what it picks up, what it skips, and what a restart re-sends."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent

from msi_tui.engine import watch
from msi_tui.engine.events import FileUploaded, FileUploadStarted
from msi_tui.engine.watch import FileFilter
from tests.helpers import Recorder, start_uploader, stop_uploader, wait_until, write_random


def test_default_filter_skips_hidden_and_temporary_files() -> None:
    accepts = FileFilter().accepts
    assert accepts("scope/C1--00001.trc") and accepts("a b/ñ.dat")
    for rel in (".hidden", "sub/.cache/x", "~$report.docx", "x.tmp", "y.part", "z.swp"):
        assert not accepts(rel), rel
    chosen = FileFilter(include=("*.trc",), exclude=("*skip*",))
    assert chosen.accepts("d/a.trc") and not chosen.accepts("d/a.txt") and not chosen.accepts("skip.trc")


@pytest.mark.kafka
def test_restart_does_not_resend_finished_files(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    for i in range(3):
        write_random(folder / f"f{i}.bin", 30_000 + i, seed=i)
    (folder / ".secret").write_text("never sent")
    (folder / "draft.tmp").write_text("never sent")
    first = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, first, folder, partitions=2)
    wait_until(lambda: len(first.paths(FileUploaded)) == 3, "three files sent")
    stop_uploader(uploader)
    assert sorted(first.paths(FileUploaded)) == ["f0.bin", "f1.bin", "f2.bin"]

    write_random(folder / "f1.bin", 12_345, seed=99)  # changed while we were away
    second = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, second, folder, partitions=2)
    (folder / "new.bin").write_bytes(b"fresh")
    wait_until(lambda: {"f1.bin", "new.bin"} <= set(second.paths(FileUploaded)), "the changed and the new file sent")
    stop_uploader(uploader)
    assert sorted(second.paths(FileUploadStarted)) == ["f1.bin", "new.bin"]


@pytest.mark.kafka
@pytest.mark.parametrize("how", ["moved in from outside", "renamed from a temporary name", "copied in"])
def test_files_arriving_every_usual_way_are_sent_once(kafka_bootstrap: str, topic: str, tmp_path: Path,
                                                      how: str) -> None:
    folder = tmp_path / "watched"
    folder.mkdir()
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder, partitions=2)
    source = tmp_path / "elsewhere.bin"
    write_random(source, 70_000, seed=5)
    if how == "moved in from outside":
        source.rename(folder / "arrived.bin")
    elif how == "renamed from a temporary name":
        write_random(folder / "arrived.bin.part", 70_000, seed=5)
        (folder / "arrived.bin.part").rename(folder / "arrived.bin")
    else:
        (folder / "arrived.bin").write_bytes(source.read_bytes())
    wait_until(lambda: sink.paths(FileUploaded) == ["arrived.bin"], f"a file {how} to be sent")
    stop_uploader(uploader)
    assert sink.paths(FileUploadStarted) == ["arrived.bin"]


def test_reading_the_watched_files_raises_no_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The uploader reads every file it sends: inotify is not asked for opens and closes
    without a write, which watchdog's threads would otherwise build and hand on, one pair
    a file sent."""
    heard: list[str] = []
    funnel = watch._Funnel.on_any_event

    def hear(self: watch._Funnel, event: FileSystemEvent) -> None:
        heard.append(event.event_type)
        funnel(self, event)

    monkeypatch.setattr(watch._Funnel, "on_any_event", hear)
    ready: list[str] = []
    watcher = watch.FolderWatcher(tmp_path, lambda _path, rel, _size, _mtime: ready.append(rel), Recorder())
    watcher.start()
    try:
        write_random(tmp_path / "first.bin", 1000)
        wait_until(lambda: "first.bin" in ready, "the first file ready")
        heard.clear()
        for _ in range(5):
            (tmp_path / "first.bin").read_bytes()
        write_random(tmp_path / "second.bin", 1000)  # events arrive in order: the reads' would be first
        wait_until(lambda: "second.bin" in ready, "the second file ready")
    finally:
        watcher.stop()
    assert heard and not {"opened", "closed_no_write"} & set(heard), heard
