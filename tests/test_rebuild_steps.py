"""The rebuilding steps without a broker: chunks gathered into runs, written before the
offset moves, and a file whose publishing fails on a full disk retried, never dropped."""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from msi_tui.engine import disk_io, wire
from msi_tui.engine import rebuild as rebuild_module
from msi_tui.engine.assembly import Assembly
from msi_tui.engine.digest import DEFAULT as DEFAULT_DIGEST
from msi_tui.engine.digest import Algorithm
from msi_tui.engine.disk_io import split
from msi_tui.engine.disk_writer import DiskWriter
from msi_tui.engine.events import FileQuarantined, FileReconstructed, Notice, RecordRejected
from msi_tui.engine.kafka_records import headers_of
from msi_tui.options import build_parser, reconstruct_settings
from tests.helpers import (
    PreparedReconstructor,
    consumed,
    digest_of,
    new_rebuilder,
    own,
    pages_in_memory,
    prepared_reconstructor,
    staged_parts,
    upload_id_of,
    upload_records,
)

CHUNK = 1024


def file_records(data: bytes, path: str = "f.bin", algorithm: Algorithm = DEFAULT_DIGEST) -> list[Message]:
    return upload_records(data, path, CHUNK, algorithm)


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PreparedReconstructor:
    monkeypatch.setattr(rebuild_module, "RETRY_AFTER_S", 0.01)
    return prepared_reconstructor(tmp_path / "out")


def staged_assembly(path: Path, content: bytes, chunk: int = CHUNK) -> Assembly:
    common = wire.file_headers(uuid.uuid4().hex, "f.bin", len(content), chunk)
    meta = wire.decode(wire.end_headers(common, digest_of(content)), 1 << 30)
    a = Assembly(meta, 0, 0, os.open(path, os.O_RDWR | os.O_CREAT), path)
    a.expected_digest = meta.digest
    return a


def write_all(a: Assembly, content: bytes, order: list[int] | None = None) -> None:
    size = a.meta.chunk_size
    for index in range(a.meta.count) if order is None else order:
        a.write(index, content[index * size:(index + 1) * size])
    a.flush()


@settings(max_examples=300, deadline=None)
@given(size=st.integers(min_value=0, max_value=40 * CHUNK), data=st.data(), handed_over=st.booleans())
def test_any_arrival_order_with_replays_rebuilds_the_file(tmp_path_factory: pytest.TempPathFactory, size: int,
                                                          data: st.DataObject, handed_over: bool) -> None:
    """`handed_over`: runs are hashed and written by a DiskWriter, early chunks and buffered
    tails on the calling thread, and the digest must still take every byte once, in order."""
    content = os.urandom(size)
    count = wire.chunk_count(size, CHUNK)
    order = data.draw(st.permutations(range(count)))
    replays = data.draw(st.lists(st.integers(0, max(0, count - 1)), max_size=5)) if count else []
    flushes = set(data.draw(st.lists(st.integers(0, count + 5), max_size=4)))
    path = tmp_path_factory.mktemp("a") / "staged"
    a = staged_assembly(path, content)
    a.writer = DiskWriter("test-write") if handed_over else None
    try:
        for step, index in enumerate([*order, *replays]):
            a.write(index, content[index * CHUNK:(index + 1) * CHUNK])
            if step in flushes:
                a.flush()
        a.flush()
        assert a.complete and a.verified()
        assert path.read_bytes() == content
    finally:
        if a.writer is not None:
            a.writer.close()
        os.close(a.fd)


def test_aligned_runs_bypass_the_page_cache(tmp_path: Path) -> None:
    if not disk_io.O_DIRECT:
        pytest.skip("no O_DIRECT on this system")
    content = os.urandom(3 * (1 << 20) + 3 * CHUNK + 5)  # runs of 1 MiB, a buffered tail
    path = tmp_path / "staged"
    a = staged_assembly(path, content)
    try:
        write_all(a, content)
        if not a.direct:
            pytest.skip("the filesystem of the temporary folder refuses O_DIRECT")
        assert pages_in_memory(path, 0, 3 << 20) == 0
        assert pages_in_memory(path, 3 << 20) > 0  # the unaligned tail went through the cache
        assert a.verified() and path.read_bytes() == content
    finally:
        os.close(a.fd)


@pytest.mark.parametrize("handed_over", [False, True])  # True: every run hashed by the writer
def test_a_filesystem_without_direct_io_gets_buffered_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            handed_over: bool) -> None:
    real = fcntl.fcntl
    refused = []

    def fake_fcntl(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & disk_io.O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", fake_fcntl)
    monkeypatch.setattr(disk_io, "O_DIRECT", 0o40000)  # (as on Linux/x86, even where there is none)
    content = os.urandom(40 * CHUNK)
    a = staged_assembly(tmp_path / "staged", content)
    a.writer = DiskWriter("test-write") if handed_over else None
    try:
        write_all(a, content)
        assert len(refused) == 1 and not a.direct  # asked once, then buffered
        assert a.verified() and (tmp_path / "staged").read_bytes() == content
    finally:
        if a.writer is not None:
            a.writer.close()
        os.close(a.fd)


def test_direct_writes_cope_with_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short direct write goes on from where it stopped; one that leaves a rest off the
    page boundary (which O_DIRECT refuses) turns the file to buffered writes, losing nothing."""
    real = os.pwrite
    calls = iter(["short", "unaligned"])

    def pwrite(fd: int, data, offset: int) -> int:
        how = next(calls, "")
        if how == "short":
            return real(fd, data[:disk_io.DIRECT_ALIGN], offset)
        if how == "unaligned":  # (a direct write of 100 bytes would be refused: say only 100 were written)
            real(fd, data, offset)
            return 100
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    content = os.urandom(5 * (1 << 20))
    a = staged_assembly(tmp_path / "staged", content, chunk=1 << 16)
    try:
        write_all(a, content, order=[1, 0, *range(2, a.meta.count)])  # chunk 1 ahead of chunk 0
        assert next(calls, "done") == "done"
        assert not a.direct or not disk_io.O_DIRECT
        assert a.verified() and (tmp_path / "staged").read_bytes() == content
    finally:
        os.close(a.fd)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EINVAL])
def test_a_failed_handed_over_write_is_written_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     error: int) -> None:
    """The writer thread's failure reaches the rebuilding thread at settle, which writes the
    run again: ENOSPC raises until there is room (the run kept meanwhile), EINVAL (a direct
    write the filesystem refuses) turns to buffered writes at once."""
    real = os.pwrite
    failures = [error, error] if error == errno.ENOSPC else [error]

    def pwrite(fd: int, data, offset: int) -> int:
        if failures and offset == 0:  # the first run: by the writer, then again by settle
            raise OSError(failures.pop(), "refused")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    writer = DiskWriter("test-write")
    content = os.urandom(3 << 20)
    a = staged_assembly(tmp_path / "staged", content, chunk=1 << 16)
    a.writer = writer
    try:
        write_all(a, content)
        if error == errno.ENOSPC:
            with pytest.raises(OSError):
                a.settle()  # the writer's write failed, and writing it again here too
        a.settle()
        assert not failures and a.direct == (error != errno.EINVAL)
        assert a.verified() and (tmp_path / "staged").read_bytes() == content
    finally:
        writer.close()
        os.close(a.fd)


def test_a_batch_hands_its_chunks_over_and_an_unfinished_file_pins_the_offset(service: PreparedReconstructor) -> None:
    """The end of a batch does not wait for its writes: the offset it stores cannot pass the
    unfinished file's first record, and what the batch gathered is on its way to the disk."""
    data = os.urandom(5 * CHUNK)
    msgs = file_records(data)
    worker = new_rebuilder(service)
    worker.apply(0, 1, msgs[:3])  # half a file: the chunks sit in a run until the batch ends
    assert service.ctx.ledger.safe_offset(0) == 0  # the unfinished file pins the partition's offset
    (assembly,) = service.ctx.assemblies.values()
    assembly.settle()  # (waits only for what was handed over)
    [staged] = staged_parts(service.output_dir)
    assert staged.read_bytes()[: 3 * CHUNK] == data[: 3 * CHUNK]
    worker.apply(0, 1, msgs[3:])
    assert (service.output_dir / "f.bin").read_bytes() == data
    assert service.ctx.ledger.safe_offset(0) == len(msgs)


@pytest.mark.parametrize("sizes", [[5, 3, 8], [20], [1, 1, 1, 13, 2], [16, 16], []])
def test_runs_are_cut_into_buffers_without_losing_or_copying_a_byte(sizes: list[int]) -> None:
    chunks = [os.urandom(n) for n in sizes]
    parts = list(split(chunks, 8))
    assert all(0 < sum(len(c) for c in part) <= 8 for part in parts)
    assert all(sum(len(c) for c in part) == 8 for part in parts[:-1])
    assert b"".join(bytes(c) for part in parts for c in part) == b"".join(chunks)


def test_a_failed_run_write_is_retried_not_lost(service: PreparedReconstructor,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(4 * CHUNK)
    msgs = file_records(data)
    real = os.pwritev
    failures = iter([True, True])

    def pwritev(fd: int, buffers, offset: int) -> int:
        if next(failures, False):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", pwritev)
    worker = new_rebuilder(service)
    worker.apply(0, 1, msgs[:2])
    worker.apply(0, 1, msgs[2:])
    assert (service.output_dir / "f.bin").read_bytes() == data
    sink = service.recorder
    assert [n.message for n in sink.of(Notice) if "No space left" in n.message]  # said, then resumed
    assert any("writable again" in n.message for n in sink.of(Notice))


def test_publishing_on_a_full_disk_is_retried_and_the_file_still_arrives(
    service: PreparedReconstructor, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * CHUNK + 17)
    msgs = file_records(data)
    real = service.output.publish
    failures = iter([True, True, True])

    def publish(*args, **kwargs):
        if next(failures, False):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(service.output, "publish", publish)
    new_rebuilder(service).apply(0, 1, msgs)
    assert (service.output_dir / "f.bin").read_bytes() == data
    assert [e.path for e in service.recorder.of(FileReconstructed)] == ["f.bin"]
    assert not service.ctx.assemblies
    assert service.ctx.ledger.safe_offset(0) == len(msgs)


def test_what_is_queued_for_a_partition_is_applied_and_published_as_one_batch(
    service: PreparedReconstructor, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"f{i}.bin": os.urandom(2 * CHUNK + i) for i in range(3)}
    work: queue.SimpleQueue = queue.SimpleQueue()
    for name, data in files.items():  # three hand-overs queued before the worker looks
        msgs = file_records(data, name)
        size = sum(len(m.value() or b"") for m in msgs)
        service._pending[0] = service._pending.get(0, 0) + 1
        service._in_flight += size
        work.put((0, 1, msgs, size))
    work.put(None)
    real, batches = service.output.publish, []

    def publish(staged):
        batches.append(sorted(s.relpath for s in staged))
        return real(staged)

    monkeypatch.setattr(service.output, "publish", publish)
    service._work_loop(work, new_rebuilder(service))
    assert batches == [sorted(files)]  # one publishing step for the three files
    assert (service._pending[0], service._in_flight) == (0, 0)
    assert sorted(e.path for e in service.recorder.of(FileReconstructed)) == sorted(files)
    for name, data in files.items():
        assert (service.output_dir / name).read_bytes() == data


@pytest.mark.parametrize("chunk", [CHUNK, 128 << 10])  # hashed joined / one by one (hash_chunks)
@pytest.mark.parametrize(("algorithm", "name"), [("xxh128", "XXH3-128"), ("sha256", "SHA-256")])
def test_each_format_is_verified_with_its_own_digest(service: PreparedReconstructor, algorithm: Algorithm, name: str,
                                                     chunk: int) -> None:
    data = os.urandom(3 * chunk + 5)
    good = upload_records(data, "good.bin", chunk, algorithm)
    bad = upload_records(data, "bad.bin", chunk, algorithm)
    bad[1] = consumed(bytes(chunk), headers_of(bad[1]), 1, bad[1].key())  # a chunk that changed on the way
    new_rebuilder(service).apply(0, 1, good + bad)
    assert (service.output_dir / "good.bin").read_bytes() == data
    assert not (service.output_dir / "bad.bin").exists()
    [quarantined] = service.recorder.of(FileQuarantined)
    assert quarantined.reason == f"{name} does not match what the uploader sent"


def test_chunks_whose_first_chunk_was_not_read_are_refused_and_reported_once(service: PreparedReconstructor) -> None:
    data = os.urandom(6 * CHUNK)
    headless = upload_records(data, "late.bin", CHUNK)[1:]  # reading began after the first chunk
    new_rebuilder(service).apply(0, 1, headless)
    [rejected] = service.recorder.of(RecordRejected)
    assert "first chunk was not read here" in rejected.reason and rejected.offset == 1
    assert service.stats.records_rejected == 5  # every chunk counted, one report
    assert not service.ctx.assemblies and not (service.output_dir / "late.bin").exists()
    new_rebuilder(service).apply(0, 1, upload_records(data, "late.bin", CHUNK, first_offset=100))  # sent again, whole
    assert (service.output_dir / "late.bin").read_bytes() == data


def test_a_record_naming_an_upload_of_another_partition_is_refused(service: PreparedReconstructor) -> None:
    data = os.urandom(4 * CHUNK)
    msgs = upload_records(data, "p0.bin", CHUNK)
    new_rebuilder(service).apply(0, 1, msgs[:2])
    own(service, 1, 2)
    stray = consumed(bytes(CHUNK), headers_of(msgs[2]), 7, msgs[2].key(), partition=1)
    every_header = [*wire.file_headers(upload_id_of(msgs[0]), "p0.bin", len(data), CHUNK),
                    ("msi.kind", b"chunk"), ("msi.index", b"2")]
    stray_full = consumed(bytes(CHUNK), every_header, 8, partition=1)
    new_rebuilder(service).apply(1, 2, [stray, stray_full])
    assert [e.offset for e in service.recorder.of(RecordRejected)] == [7, 8]
    new_rebuilder(service).apply(0, 1, msgs[2:])
    assert (service.output_dir / "p0.bin").read_bytes() == data


def test_a_chunk_past_the_end_of_its_file_is_refused(service: PreparedReconstructor) -> None:
    """A chunk after the first names only its index: one past the last chunk, with the last chunk's
    length, was once written beyond the file, which was then published longer than sent."""
    data = os.urandom(3 * CHUNK + 5)
    msgs = upload_records(data, "end.bin", CHUNK)
    past = consumed(b"x" * 5, wire.chunk_headers(wire.file_headers(upload_id_of(msgs[0]), "end.bin", len(data),
                                                                      CHUNK), 7), 9, msgs[0].key())
    assert len(headers_of(past) or ()) == 3
    new_rebuilder(service).apply(0, 1, [msgs[0], past, *msgs[1:]])
    [rejected] = service.recorder.of(RecordRejected)
    assert rejected.offset == 9 and rejected.reason == "chunk index 7 out of range (count 4)"
    assert (service.output_dir / "end.bin").read_bytes() == data


def test_buffered_writes_leave_o_direct_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reconstruct --buffered-writes`: every run through the page cache, the file intact."""
    args = build_parser().parse_args(["reconstruct", str(tmp_path / "out"), "--buffered-writes"])
    chosen = reconstruct_settings(args, tmp_path / "out")
    assert not chosen.direct_writes
    assert reconstruct_settings(build_parser().parse_args(["reconstruct", "x"]), tmp_path / "out").direct_writes
    real = fcntl.fcntl
    asked = []

    def fake_fcntl(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & disk_io.O_DIRECT:
            asked.append(fd)
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", fake_fcntl)
    service = prepared_reconstructor(chosen.output_dir, direct_writes=chosen.direct_writes)
    data = os.urandom(3 << 20)
    new_rebuilder(service).apply(0, 1, upload_records(data, "b.bin", CHUNK))
    assert (tmp_path / "out" / "b.bin").read_bytes() == data
    assert asked == []  # (with direct writes, each 1 MiB run sets O_DIRECT first)
