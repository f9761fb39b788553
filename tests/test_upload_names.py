"""Every file the instrument writes arrives, or the operator is told: a name that is not
UTF-8 travels with its bytes; a name a reconstructor would refuse is refused at the uploader
before anything of it is sent, once, and the watcher goes on; a thread of the uploader that
dies is a fatal error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from msi_tui.engine import watch
from msi_tui.engine.events import (
    FileReconstructed,
    FileUploaded,
    FileUploadFailed,
    Notice,
    RecordRejected,
    UploadNotRebuilt,
)
from msi_tui.engine.upload import Uploader
from tests.helpers import Recorder, cli, reconstructing, start_uploader, stop_uploader, wait_until, write_random
from tests.test_upload_abort import TopicReader, make_topic

# Names Linux takes and a reconstructor refuses, as bytes, and what the report must show.
REFUSED: dict[bytes, tuple[str, str]] = {
    b"back\\slash.txt": ("back\\slash.txt", "backslash"),
    b"C:notes.txt": ("C:notes.txt", "drive letter"),
    b"tab\there.txt": ("tab\\there.txt", "control character"),
    b".msi-tui-staging/planted.txt": (".msi-tui-staging/planted.txt", "reconstructor's own folder"),
}
REFUSED_FOLDERS = {".msi-tui-staging/"}  # (reported too: it could be empty)
# Latin-1, as old Windows software writes, in a file name and in a folder name.
NOT_UTF8 = [b"caf\xe9.txt", b"r\xe9sultats/trace.trc"]


def write_named(folder: Path, name: bytes, data: bytes) -> None:
    """A file under a name given as bytes (which need not be UTF-8)."""
    path = os.path.join(os.fsencode(folder), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.kafka
def test_names_a_reconstructor_refuses_fail_once_at_the_uploader_and_later_files_still_go(
        kafka_bootstrap: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rescans every 0.3 s (not 60): a refused file must not be reported again at each one.
    scans: list[float] = []
    init, scan = watch.FolderWatcher.__init__, watch.FolderWatcher._scan

    def fast_init(self: watch.FolderWatcher, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "rescan_seconds": 0.3})

    def counted_scan(self: watch.FolderWatcher, top: Path | None = None) -> None:
        scan(self, top)
        scans.append(0.0)

    monkeypatch.setattr(watch.FolderWatcher, "__init__", fast_init)
    monkeypatch.setattr(watch.FolderWatcher, "_scan", counted_scan)
    make_topic(kafka_bootstrap, topic)
    folder = tmp_path / "watched"
    folder.mkdir()
    sink = Recorder()
    # Hidden files included, so that the `.msi-tui-` folder is not skipped as hidden.
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder, quiet_seconds=0.5,
                              file_filter=watch.FileFilter(include_hidden=True))
    try:
        for i, name in enumerate([*REFUSED, *NOT_UTF8]):
            write_named(folder, name, f"file {i}\n".encode())
        write_random(folder / "after.txt", 40_000, seed=7)
        uploaded = wait_until(lambda: len(sink.of(FileUploaded)) == 3 and sink.of(FileUploaded),
                              "the files with names that travel sent", timeout=30)
        n_failed = len(REFUSED) + len(REFUSED_FOLDERS)
        failed = wait_until(lambda: len(sink.of(FileUploadFailed)) >= n_failed and sink.of(FileUploadFailed),
                            "every refused name reported", timeout=30)
        seen = len(scans)
        wait_until(lambda: len(scans) >= seen + 3, "three more rescans of the folder", timeout=30)
        wait_until(uploader.idle, "the uploader to be idle")
        snap = uploader.snapshot()
        assert (snap.files_done, snap.files_failed, snap.state) == (3, n_failed, "watching")
    finally:
        stop_uploader(uploader)
    assert sorted(u.path for u in uploaded) == ["after.txt", "caf\\xe9.txt", "r\\xe9sultats/trace.trc"]
    assert len(sink.of(FileUploadFailed)) == n_failed  # once each, whatever the rescans
    reasons = {f.path: f.reason for f in failed}
    assert set(reasons) == {shown for shown, _ in REFUSED.values()} | REFUSED_FOLDERS
    for shown, why in REFUSED.values():
        assert why in reasons[shown] and "\n" not in reasons[shown], (shown, reasons[shown])
    assert not [n for n in sink.of(Notice) if n.level == "error"]  # the watcher never faltered
    assert uploader.died is None

    # Nothing of the refused files is in the topic; the others went with their names' bytes.
    reader = TopicReader(kafka_bootstrap, topic)
    try:
        records = reader.read_all()
    finally:
        reader.close()
    assert {r.upload_id for r in records if r.kind != "dir"} == {u.upload_id for u in uploaded}
    assert {dict(r.headers).get("msi.path") for r in records} - {None} == {
        b"after.txt", *NOT_UTF8, b"r\xe9sultats"}

    # ... and the files arrive, with the same bytes in their names: nothing is refused.
    out = tmp_path / "out"
    with reconstructing(kafka_bootstrap, topic, out) as rebuilt:
        wait_until(lambda: len(rebuilt.of(FileReconstructed)) == 3, "the files rebuilt", timeout=60)
    assert not rebuilt.of(RecordRejected) and not rebuilt.of(UploadNotRebuilt)
    for name in [b"after.txt", *NOT_UTF8]:
        source, arrived = os.path.join(os.fsencode(folder), name), os.path.join(os.fsencode(out), name)
        with open(source, "rb") as a, open(arrived, "rb") as b:
            assert a.read() == b.read()


@pytest.mark.kafka
@pytest.mark.parametrize("name", [b"back\\slash.txt", b"C:notes.txt", b"tab\there.txt"],
                         ids=["backslash", "drive", "tab"])
def test_upload_file_of_a_refused_name_sends_nothing_and_exits_non_zero_with_one_line(
        kafka_bootstrap: str, topic: str, tmp_path: Path, name: bytes) -> None:
    make_topic(kafka_bootstrap, topic)
    write_named(tmp_path, name, b"some data\n")
    result = cli("--bootstrap", kafka_bootstrap, "--topic", topic, "upload-file",
                 os.fsdecode(os.path.join(os.fsencode(tmp_path), name)), timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    [line] = output.splitlines()
    shown, why = REFUSED[name]
    assert line.startswith(f"ERROR: upload failed: {shown}: ") and why in line, line
    reader = TopicReader(kafka_bootstrap, topic)
    try:
        assert reader.read_all() == []
    finally:
        reader.close()


def test_the_watcher_outlives_an_error_in_one_file(tmp_path: Path) -> None:
    def is_known(rel: str, _size: int, _mtime_ns: int) -> bool:
        if rel == "cursed.bin":
            raise UnicodeEncodeError("utf-8", rel, 0, 1, "a fault of ours")
        return False

    ready: list[str] = []
    sink = Recorder()
    watcher = watch.FolderWatcher(tmp_path, lambda _path, rel, _size, _mtime: ready.append(rel), sink,
                                  is_known=is_known)
    watcher.start()
    try:
        write_random(tmp_path / "cursed.bin", 100)
        wait_until(lambda: sink.of(Notice), "the error in one file told", timeout=30)
        write_random(tmp_path / "later.bin", 100)
        wait_until(lambda: "later.bin" in ready, "a later file ready", timeout=30)
    finally:
        watcher.stop()
    [notice] = sink.of(Notice)
    assert notice.level == "error" and notice.message.startswith("cursed.bin: "), notice
    assert ready == ["later.bin"]


@pytest.mark.kafka
@pytest.mark.parametrize("thread", ["msi-watch", "msi-upload-0", "msi-deliveries"])
def test_a_thread_that_dies_is_a_fatal_error_and_the_uploader_stops(
        kafka_bootstrap: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: str) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a fault of ours")

    target = {"msi-watch": (watch.FolderWatcher, "_release_ready"), "msi-upload-0": (Uploader, "_upload_loop"),
              "msi-deliveries": (Uploader, "_serve_deliveries")}[thread]
    monkeypatch.setattr(*target, broken)
    folder = tmp_path / "watched"
    folder.mkdir()
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink, folder, n_threads=1)
    try:
        assert uploader.wait_stopped(30), "the uploader did not stop"
    finally:
        uploader.force_stop()
        uploader.wait_stopped(30)
    errors = [n.message for n in sink.of(Notice) if n.level == "error"]
    assert len(errors) == 1 and thread in errors[0] and "RuntimeError('a fault of ours')" in errors[0], errors
    assert uploader.died is not None and thread in uploader.died
