"""Publishing verified files: never over another file, never through a symlink."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from msi_tui.engine.output import QUARANTINE, ConflictPolicy, OutputFolder, Published, Staged
from tests.helpers import visible


def stage(folder: OutputFolder, data: bytes, uid: str = "0" * 32) -> tuple[int, Path, str]:
    fd, path = folder.open_staged(uid)
    os.pwrite(fd, data, 0)
    return fd, path, hashlib.sha256(data).hexdigest()


def staged(folder: OutputFolder, data: bytes, relpath: str, uid: str = "0" * 32) -> Staged:
    fd, path, digest = stage(folder, data, uid)
    return Staged(fd, path, relpath, uid, digest, "sha256", len(data))


def publish(folder: OutputFolder, data: bytes, relpath: str) -> Published:
    file = staged(folder, data, relpath)
    folder.publish([file])
    assert file.published is not None, file.refused
    return file.published


@pytest.fixture
def out(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    root.mkdir()
    return root


def test_new_file_appears_and_staging_is_cleaned_up(out: Path) -> None:
    result = publish(OutputFolder(out), b"data", "a/b/c.trc")
    assert (result.path, result.duplicate, result.older_kept_as) == ("a/b/c.trc", False, None)
    assert (out / "a/b/c.trc").read_bytes() == b"data"
    assert visible(out) == ["a"]


def test_identical_file_is_a_duplicate(out: Path) -> None:
    (out / "x.bin").write_bytes(b"same")
    result = publish(OutputFolder(out), b"same", "x.bin")
    assert result.duplicate and result.path == "x.bin"
    assert visible(out) == ["x.bin"]


def test_keep_both_saves_the_new_file_beside_the_old(out: Path) -> None:
    (out / "run.tar.gz").write_bytes(b"old")
    result = publish(OutputFolder(out), b"new", "run.tar.gz")
    assert result.path == "run (2).tar.gz"
    assert (out / "run.tar.gz").read_bytes() == b"old"
    assert (out / "run (2).tar.gz").read_bytes() == b"new"
    again = publish(OutputFolder(out), b"new", "run.tar.gz")  # the same new file once more
    assert again.duplicate and again.path == "run (2).tar.gz"


def test_rename_old_keeps_the_older_file_as_a_version(out: Path) -> None:
    (out / "trace.trc").write_bytes(b"old")
    (out / "trace (2).trc").write_bytes(b"older still")
    result = publish(OutputFolder(out, "rename-old"), b"new", "trace.trc")
    assert (result.path, result.older_kept_as) == ("trace.trc", "trace (3).trc")
    assert (out / "trace.trc").read_bytes() == b"new"
    assert (out / "trace (3).trc").read_bytes() == b"old"
    assert (out / "trace (2).trc").read_bytes() == b"older still"


def test_symlinked_folder_on_the_way_is_refused(out: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "sub").symlink_to(outside)
    file = staged(OutputFolder(out), b"x", "sub/file.bin")
    OutputFolder(out).publish([file])
    assert file.published is None and "symlink" in file.refused
    assert file.quarantined is not None and file.quarantined.parent == out / QUARANTINE
    assert file.quarantined.read_bytes() == b"x"
    assert list(outside.iterdir()) == []


def test_a_batch_interrupted_by_a_full_disk_carries_on_where_it_stopped(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = OutputFolder(out)
    files = [staged(folder, f"file {i}".encode(), f"d{i % 2}/f{i}.bin", f"{i:032x}") for i in range(4)]
    real_link = os.link
    links: list[str] = []

    def link(*args: Any, **kwargs: Any) -> None:
        if len(links) == 2:
            links.append("failed")
            raise OSError(errno.ENOSPC, "No space left on device")
        links.append(args[1])
        real_link(*args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(OSError):
        folder.publish(files)
    folder.publish(files)  # the retry
    assert links == ["f0.bin", "f1.bin", "failed", "f2.bin", "f3.bin"]  # each linked once
    assert [(f.published.path, f.published.duplicate) for f in files if f.published] == [
        (f"d{i % 2}/f{i}.bin", False) for i in range(4)]
    assert all(f.released for f in files)
    assert visible(out) == ["d0", "d1"]  # no staged file left
    assert (out / "d1/f3.bin").read_bytes() == b"file 3"


@pytest.mark.parametrize("policy", ["keep-both", "rename-old"])
def test_symlink_planted_at_the_name_is_never_written_through(out: Path, tmp_path: Path,
                                                             policy: ConflictPolicy) -> None:
    target = tmp_path / "victim.txt"
    target.write_bytes(b"precious")
    (out / "f.txt").symlink_to(target)
    publish(OutputFolder(out, policy), b"payload", "f.txt")
    assert target.read_bytes() == b"precious"


