"""The reconstructor never loses a file, never blocks a partition, never pins an offset.

Each test is one way things go wrong in an ordinary day (a database locked for a moment, a
folder or a FIFO where a file must go, names at the length limit, an upload that never
ends, a killed member's leftovers, two reconstructors on one folder, hostile records), and
shows the healthy outcome: the file arrives or is put aside with one clear message, the
partition's safe offset moves past it, nothing is written outside the output folder.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest
from confluent_kafka import Message

from msi_tui.engine import output as output_module
from msi_tui.engine import rebuild as rebuild_module
from msi_tui.engine import wire
from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.events import (
    FileQuarantined,
    FileReconstructed,
    Notice,
    RecordRejected,
    UploadNotRebuilt,
)
from msi_tui.engine.kafka_records import offset_of
from msi_tui.engine.output import OutputFolder
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from tests.helpers import (
    PreparedReconstructor,
    consumed,
    digest_of,
    new_rebuilder,
    own,
    prepared_reconstructor,
    staged_parts,
    upload_id_of,
    upload_records,
    visible,
)

CHUNK = 1024


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PreparedReconstructor:
    monkeypatch.setattr(rebuild_module, "RETRY_AFTER_S", 0.01)
    return prepared_reconstructor(tmp_path / "out")


def apply(service: Reconstructor, records: list[Message]) -> None:
    new_rebuilder(service).apply(0, 1, records)


def test_an_error_seen_once_is_retried_and_nothing_after_it_is_skipped(service: PreparedReconstructor) -> None:
    """Case 1: the journal's database reports "locked" once in the middle of a batch."""

    class LockedOnce:
        def __init__(self) -> None:
            self.calls = 0

        def seen(self, _uid: str) -> bool:
            self.calls += 1
            if self.calls == 2:
                raise sqlite3.OperationalError("database is locked")
            return False

        def add(self, *_args: object) -> None: ...
        def flush(self) -> None: ...

    service.ctx.journal = LockedOnce()  # type: ignore[assignment]
    first, second = os.urandom(3 * CHUNK), os.urandom(2 * CHUNK + 5)
    msgs = upload_records(first, "a.bin", CHUNK) + upload_records(second, "b.bin", CHUNK, first_offset=4)
    apply(service, msgs)
    assert (service.output_dir / "a.bin").read_bytes() == first
    assert (service.output_dir / "b.bin").read_bytes() == second
    assert service.ctx.ledger.safe_offset(0) == offset_of(msgs[-1]) + 1
    assert any("database is locked" in n.message and "trying again" in n.message for n in service.recorder.of(Notice))


@pytest.mark.parametrize("policy", ["keep-both", "rename-old"])
def test_a_folder_at_the_target_keeps_the_folder_and_the_file(tmp_path: Path, policy: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 2: `mkdir OUT/data`, then a file `data` arrives."""
    monkeypatch.setattr(rebuild_module, "RETRY_AFTER_S", 0.01)
    service = prepared_reconstructor(tmp_path / "out", on_conflict=policy)
    (service.output_dir / "data").mkdir()
    (service.output_dir / "data" / "inside.txt").write_text("kept")
    data = os.urandom(CHUNK + 1)
    msgs = upload_records(data, "data", CHUNK)
    apply(service, msgs)
    assert (service.output_dir / "data (2)").read_bytes() == data
    assert (service.output_dir / "data" / "inside.txt").read_text() == "kept"
    assert service.ctx.ledger.safe_offset(0) == len(msgs)


@pytest.mark.parametrize("path", [".msi-tui-staging", ".msi-tui-quarantine", ".msi-tui-staging/x.part", ".msi-tui-x/y"])
def test_uploads_named_like_the_reconstructors_own_folders_are_refused(service: PreparedReconstructor,
                                                                       path: str) -> None:
    """Cases 2 and 9: such a record is refused, plants nothing, and the partition goes on."""
    msgs = upload_records(b"planted bytes" * 10, path, CHUNK)
    good = upload_records(b"good", "good.txt", CHUNK, first_offset=len(msgs))
    apply(service, msgs + good)
    assert "inside the reconstructor's own folder" in service.recorder.of(RecordRejected)[0].reason
    assert visible(service.output_dir) == ["good.txt"]
    assert service.ctx.ledger.safe_offset(0) == offset_of(good[-1]) + 1


def test_a_long_name_whose_digest_fails_is_quarantined_under_a_name_that_fits(service: PreparedReconstructor) -> None:
    """Case 2: the quarantine name of a 250-byte name would be over 255 bytes."""
    name = "q" * 240 + ".trc"
    msgs = upload_records(os.urandom(100), "deep/" + name, CHUNK, digest="00" * 16)
    apply(service, msgs)
    [quarantined] = service.recorder.of(FileQuarantined)
    kept = Path(quarantined.quarantine_path)
    assert kept.is_file() and len(kept.name.encode()) <= 255 and kept.name.startswith(upload_id_of(msgs[0]))
    assert service.ctx.ledger.safe_offset(0) == len(msgs)


def test_a_255_byte_name_that_conflicts_is_kept_beside_with_a_shortened_name(service: PreparedReconstructor) -> None:
    """Case 2: `name (2).ext` of a 255-byte name would be too long."""
    name = "n" * 251 + ".trc"
    (service.output_dir / name).write_bytes(b"older")
    data = os.urandom(300)
    apply(service, upload_records(data, name, CHUNK))
    [kept] = [p for p in service.output_dir.iterdir() if p.name.endswith(" (2).trc")]
    assert len(kept.name.encode()) == 255 and kept.read_bytes() == data
    assert (service.output_dir / name).read_bytes() == b"older"


def test_too_many_open_files_waits_then_goes_on(service: PreparedReconstructor,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 2: EMFILE is transient: the partition waits, says why, and resumes by itself."""
    real, failures = os.open, iter([True, True])

    def crowded(path, flags, mode=0o777, *, dir_fd=None):
        if str(path).endswith(".part") and next(failures, False):
            raise OSError(errno.EMFILE, "Too many open files")
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", crowded)
    data = os.urandom(2 * CHUNK)
    apply(service, upload_records(data, "f.bin", CHUNK))
    assert (service.output_dir / "f.bin").read_bytes() == data
    notices = [n.message for n in service.recorder.of(Notice)]
    assert any("Too many open files" in m for m in notices) and any("writable again" in m for m in notices)


def test_a_fifo_at_the_target_neither_hangs_nor_is_opened(service: PreparedReconstructor) -> None:
    """Case 3: a FIFO where an incoming file must go."""
    os.mkfifo(service.output_dir / "trace.trc")
    data = os.urandom(CHUNK)
    apply(service, upload_records(data, "trace.trc", CHUNK))  # (pytest-timeout ends a hang)
    assert (service.output_dir / "trace (2).trc").read_bytes() == data


def test_an_upload_that_never_ends_is_abandoned_by_record_time(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 4: the uploader died mid-file; other uploads go on in the partition."""
    monkeypatch.setattr(rebuild_module, "RETRY_AFTER_S", 0.01)
    service = prepared_reconstructor(tmp_path / "out", abandon_after_s=60)
    stuck = upload_records(os.urandom(4 * CHUNK), "stuck.bin", CHUNK, timestamp_ms=1_000)[:2]  # then nothing
    worker = new_rebuilder(service)
    worker.apply(0, 1, stuck)
    assert service.ctx.ledger.safe_offset(0) == 0 and staged_parts(service.output_dir)
    later = upload_records(b"later", "later.bin", CHUNK, first_offset=2, timestamp_ms=1_000 + 30_000)  # not yet
    worker.apply(0, 1, later)
    assert service.ctx.ledger.safe_offset(0) == 0
    last = upload_records(b"last", "last.bin", CHUNK, first_offset=4, timestamp_ms=1_000 + 61_000)
    worker.apply(0, 1, last)
    [ended] = service.recorder.of(UploadNotRebuilt)
    assert (ended.path, ended.outcome) == ("stuck.bin", "abandoned")
    assert service.ctx.ledger.safe_offset(0) == 6 and not staged_parts(service.output_dir)
    assert service.receipts.outcome(upload_id_of(stuck[0])) == "abandoned"
    # Its late chunks, should they come, are skipped without a word.
    late = upload_records(os.urandom(4 * CHUNK), "stuck.bin", CHUNK, uid=upload_id_of(stuck[0]), first_offset=6)
    worker.apply(0, 1, late[2:])
    assert not service.recorder.of(RecordRejected) and not (service.output_dir / "stuck.bin").exists()


def test_records_before_the_position_after_a_reassignment_are_not_applied(service: PreparedReconstructor) -> None:
    """Case 6: records fetched before a rebalance, handed over after it, are stale: their
    upload was ended already, and they must not be reported as orphans."""
    data = os.urandom(6 * CHUNK)
    msgs = upload_records(data, "f.bin", CHUNK)
    apply(service, msgs)
    own(service, 0, 2, committed=len(msgs))
    new_rebuilder(service).apply(0, 2, msgs[3:])
    assert not service.recorder.of(RecordRejected)
    assert [e.path for e in service.recorder.of(FileReconstructed)] == ["f.bin"]


def test_a_killed_members_staged_files_are_removed_by_the_next_one(tmp_path: Path) -> None:
    """Case 7, and case 8's other half: a running member's files are left alone."""
    out = tmp_path / "out"
    killed, running = OutputFolder(out), OutputFolder(out)
    killed.prepare()
    running.prepare()
    fd_killed, staged_killed = killed.open_staged("a" * 32)
    fd_running, staged_running = running.open_staged("a" * 32)
    assert staged_killed != staged_running  # one upload, two members: two staged files
    os.close(fd_killed)
    assert killed._lock_fd is not None
    os.close(killed._lock_fd)  # (what SIGKILL does: the lock goes with the process)
    newcomer = OutputFolder(out)
    assert newcomer.prepare() == [staged_killed.name]
    assert staged_running.exists() and not staged_killed.exists()
    os.close(fd_running)


def test_two_reconstructors_of_different_groups_on_one_folder_both_finish(tmp_path: Path) -> None:
    """Case 8: an operator mistake, but nothing stalls: the second finds the identical file."""
    out = tmp_path / "out"
    first, second = prepared_reconstructor(out, group_id="one"), prepared_reconstructor(out, group_id="two")
    data = os.urandom(5 * CHUNK)
    msgs = upload_records(data, "f.bin", CHUNK)
    w1, w2 = new_rebuilder(first), new_rebuilder(second)
    w1.apply(0, 1, msgs[:3])
    w2.apply(0, 1, msgs[:4])
    w1.apply(0, 1, msgs[3:])
    w2.apply(0, 1, msgs[4:])
    assert (out / "f.bin").read_bytes() == data and visible(out) == ["f.bin"]
    assert [e.duplicate for e in second.recorder.of(FileReconstructed)] == [True]
    assert second.ctx.ledger.safe_offset(0) == len(msgs)


def test_a_published_file_is_exactly_the_bytes_verified(service: PreparedReconstructor,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 9: bytes beyond the declared size in the staged file never reach the output."""
    real = output_module.OutputFolder.open_staged

    def planted(self, upload_id):
        fd, path = real(self, upload_id)
        os.pwrite(fd, b"X" * 64, 0)  # (as if something had written there first)
        return fd, path

    monkeypatch.setattr(output_module.OutputFolder, "open_staged", planted)
    apply(service, upload_records(b"8 bytes!", "eight.txt", CHUNK))
    assert (service.output_dir / "eight.txt").read_bytes() == b"8 bytes!"


def test_a_small_chunk_declaring_a_large_file_reserves_little(service: PreparedReconstructor) -> None:
    """Case 10: a 1-byte chunk 0 of an upload declaring 64 MiB."""
    common = wire.file_headers("b" * 32, "big.bin", 64 << 20, 1)
    apply(service, [consumed(b"x", wire.chunk_headers(common, 0), 0, "b" * 32)])
    [staged] = staged_parts(service.output_dir)
    assert os.stat(staged).st_blocks * 512 <= 64 << 10


def test_a_sink_that_raises_does_not_stop_reconstruction(tmp_path: Path) -> None:
    """Case 11: the console's standard output was closed."""

    def broken(_event: object) -> None:
        raise OSError(errno.EPIPE, "Broken pipe")

    service = Reconstructor(ClusterConfig("t", "t", {"bootstrap.servers": "127.0.0.1:1"}),
                            ReconstructSettings(output_dir=tmp_path / "out"), broken)
    service.output.prepare()
    own(service)
    data = os.urandom(2 * CHUNK)
    msgs = upload_records(data, "f.bin", CHUNK) + upload_records(data, "../evil", CHUNK, first_offset=3)
    apply(service, msgs)  # (reports a file and a refused record: neither can be shown)
    assert (service.output_dir / "f.bin").read_bytes() == data
    assert service.ctx.ledger.safe_offset(0) == offset_of(msgs[-1]) + 1


def test_an_io_error_at_the_fsync_is_waited_out_not_ignored(service: PreparedReconstructor,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 11: the disk reports a writeback error at the fsync before publishing: the file is
    not published on the strength of it; the partition waits, says why, and goes on."""
    real, failures = os.fsync, iter([True])

    def failing(fd: int) -> None:
        if next(failures, False):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", failing)
    data = os.urandom(2 * CHUNK)
    apply(service, upload_records(data, "f.bin", CHUNK))
    assert (service.output_dir / "f.bin").read_bytes() == data
    assert any("Input/output error" in n.message for n in service.recorder.of(Notice))


def test_digest_helper_matches_the_records(service: PreparedReconstructor) -> None:
    """(So the tests above can fail: a wrong digest is quarantined, not published.)"""
    data = os.urandom(50)
    apply(service, upload_records(data, "ok.bin", CHUNK, digest=digest_of(data)))
    apply(service, upload_records(data, "bad.bin", CHUNK, digest="11" * 16, first_offset=10))
    assert visible(service.output_dir) == [".msi-tui-quarantine", "ok.bin"]


def test_an_upload_whose_staged_file_cannot_be_made_is_refused_once(service: PreparedReconstructor,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure of the upload's own before anything is staged: one message, a receipt, and
    its later records are skipped without a report each."""

    def refused(_self: OutputFolder, _uid: str) -> tuple[int, Path]:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(OutputFolder, "open_staged", refused)
    msgs = upload_records(os.urandom(3 * CHUNK), "f.bin", CHUNK)
    apply(service, msgs)
    [ended] = service.recorder.of(UploadNotRebuilt)
    assert (ended.path, ended.outcome, ended.reason) == ("f.bin", "refused", "Invalid argument")
    assert service.receipts.outcome(upload_id_of(msgs[0])) == "refused"
    assert not service.recorder.of(RecordRejected)
    assert service.ctx.ledger.safe_offset(0) == len(msgs)
