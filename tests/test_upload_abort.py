"""Every upload the uploader gives up on is withdrawn with an `abort` record, at once or at
the next start, and counted once; `upload-file` then exits non-zero with one line."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from msi_tui.engine import upload as upload_module
from msi_tui.engine import upload_job, wire
from msi_tui.engine.events import (
    FileReconstructed,
    FileUploaded,
    FileUploadFailed,
    FileUploadStarted,
    Notice,
    UploadNotRebuilt,
)
from msi_tui.engine.kafka_records import headers_of, offset_of
from tests.helpers import (
    Background,
    Recorder,
    cli,
    reconstructing,
    start_uploader,
    stop_uploader,
    visible,
    wait_until,
    write_random,
)

pytestmark = pytest.mark.kafka


class Rec(NamedTuple):
    kind: str  # chunk, end or abort
    upload_id: str
    headers: wire.Headers


class TopicReader:
    """Every record of a one-partition topic, read from its start."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False})
        self.partition = TopicPartition(topic, 0, 0)
        self.consumer.assign([self.partition])
        self.records: list[Rec] = []
        self.position = 0

    def read(self) -> list[Rec]:
        for msg in self.consumer.consume(1000, 0.2):
            assert msg.error() is None, msg.error()
            headers = [(name, value or b"") for name, value in headers_of(msg) or ()]
            kind = dict(headers).get("msi.kind", b"chunk").decode()  # later chunks carry only their index
            self.records.append(Rec(kind, (msg.key() or b"").decode(), headers))
            self.position = offset_of(msg) + 1
        return self.records

    def read_all(self) -> list[Rec]:
        """Everything in the topic now (what was acknowledged before this call included)."""
        high = self.consumer.get_watermark_offsets(self.partition, timeout=10)[1]
        wait_until(lambda: self.read() is not None and self.position >= high, f"the topic read to offset {high}")
        return self.records

    def wait_for(self, kind: str, upload_id: str | None = None, path: str | None = None) -> Rec:
        def found() -> Rec | None:
            for rec in self.read():
                if rec.kind == kind and upload_id in (None, rec.upload_id) and \
                        path in (None, dict(rec.headers).get("msi.path", b"").decode()):
                    return rec
            return None
        return wait_until(found, f"a {kind} record of {upload_id or path}")

    def count(self, kind: str, upload_id: str) -> int:
        return sum(1 for rec in self.records if rec.kind == kind and rec.upload_id == upload_id)

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def reader(kafka_bootstrap: str, topic: str):
    make_topic(kafka_bootstrap, topic)
    reader = TopicReader(kafka_bootstrap, topic)
    yield reader
    reader.close()


def make_topic(bootstrap: str, topic: str, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # (kept: its futures die with it)
    admin.create_topics([NewTopic(topic, 1, config=config)])[topic].result(timeout=30)


def set_topic_config(bootstrap: str, topic: str, name: str, value: str) -> None:
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)


def withdrawals(sink: Recorder) -> list[str]:
    return [n.message for n in sink.of(Notice) if "unfinished upload" in n.message]


def cli_upload(bootstrap: str, topic: str, path: Path, *extra: str) -> list[str]:
    return ["--bootstrap", bootstrap, "--topic", topic, "upload-file", str(path), *extra]


def test_a_file_deleted_while_being_sent_is_withdrawn(kafka_bootstrap: str, topic: str, reader: TopicReader,
                                                      tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    write_random(big, 64 << 20, seed=1)
    sink = Recorder()
    # One chunk in flight at a time: 4096 chunks take far longer than the test needs.
    uploader = start_uploader(kafka_bootstrap, topic, sink, queue_max_size=1, n_threads=1)
    uploader.enqueue_file(big)
    started = wait_until(lambda: sink.of(FileUploadStarted), "the upload to start")[0]
    reader.wait_for("chunk", started.upload_id)
    big.unlink()
    failed = wait_until(lambda: sink.of(FileUploadFailed), "the upload to fail")
    assert [(f.path, "deleted" in f.reason) for f in failed] == [("big.bin", True)]
    abort = reader.wait_for("abort", started.upload_id)
    meta = wire.decode(abort.headers, 1 << 40)  # what a reconstructor reads: the upload it holds
    assert (meta.upload_id, meta.path, meta.size, meta.chunk_size) == (started.upload_id, "big.bin", 64 << 20, 16384)
    wait_until(uploader.idle, "the uploader to be idle")
    snap = uploader.snapshot()
    assert (snap.files_in_progress, snap.files_failed, snap.files_done) == (0, 1, 0)
    stop_uploader(uploader)
    assert not sink.of(FileUploaded)

    again = Recorder()
    stop_uploader(start_uploader(kafka_bootstrap, topic, again))
    assert withdrawals(again) == []  # its abort was acknowledged: nothing is left to withdraw
    assert reader.read_all() and reader.count("abort", started.upload_id) == 1


def test_an_upload_left_by_a_killed_uploader_is_withdrawn_once_at_the_next_start(
        kafka_bootstrap: str, topic: str, reader: TopicReader, tmp_path: Path) -> None:
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    write_random(big, 16 << 20, seed=2)
    write_random(small, 1000, seed=3)
    killed = Background(*cli_upload(kafka_bootstrap, topic, big, "--queue-max-size", "1"), log=tmp_path / "killed.log")
    with killed as up:
        first = reader.wait_for("chunk", path="big.bin")
        wait_until(lambda: reader.read() and reader.count("chunk", first.upload_id) >= 3,
                   "its first chunks in the topic")
        assert up.proc.poll() is None, up.output()
        up.kill()  # SIGKILL: no abort, no registry update
    assert reader.count("end", first.upload_id) == 0

    second = cli(*cli_upload(kafka_bootstrap, topic, small), timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("withdrawing 1 unfinished upload an earlier run left") == 1, second.stdout
    abort = reader.wait_for("abort", first.upload_id)
    meta = wire.decode(abort.headers, 1 << 40)
    assert (meta.path, meta.size, meta.chunk_size, meta.algorithm) == ("big.bin", 16 << 20, 16384, "xxh128")

    sink = Recorder()
    folder = tmp_path / "watched"
    folder.mkdir()
    stop_uploader(start_uploader(kafka_bootstrap, topic, sink, folder=folder))  # `upload DIR` finds it withdrawn too
    assert withdrawals(sink) == []
    reader.read_all()
    assert reader.count("abort", first.upload_id) == 1
    assert "unfinished" not in cli(*cli_upload(kafka_bootstrap, topic, small)).stdout


def test_a_failure_part_way_is_counted_once_and_upload_file_exits_with_one_line(
        kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    # The topic refuses records of 16 KiB: the first delivery report fails the upload (and,
    # by the gapless guarantee, the producer) while its thread still produces chunks (4096
    # of them, more than librdkafka's queue of 3000 holds).
    make_topic(kafka_bootstrap, topic, **{"max.message.bytes": "10000"})
    big = tmp_path / "big.bin"
    write_random(big, 64 << 20, seed=4)
    sink = Recorder()
    uploader = start_uploader(kafka_bootstrap, topic, sink)
    uploader.enqueue_file(big)
    wait_until(lambda: sink.of(FileUploadFailed) and uploader.idle(), "the upload to fail and the uploader to be idle")
    snap = uploader.snapshot()
    assert (snap.files_in_progress, snap.files_failed, snap.files_done) == (0, 1, 0)
    stop_uploader(uploader)
    assert [f.path for f in sink.of(FileUploadFailed)] == ["big.bin"]

    result = cli(*cli_upload(kafka_bootstrap, topic, big), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    failures = [line for line in output.splitlines() if "failed" in line]
    assert len(failures) == 1 and "big.bin" in failures[0] and "too large" in failures[0], output
    # The failed producer could not send its abort records: once the topic takes chunks
    # again, the next start withdraws both uploads (the command's own start may have
    # withdrawn the first already, if its abort did not share a refused batch with chunks).
    assert "withdrawing 1 unfinished upload" in result.stdout
    set_topic_config(kafka_bootstrap, topic, "max.message.bytes", "1048588")
    reader = TopicReader(kafka_bootstrap, topic)
    try:
        after, folder = Recorder(), tmp_path / "watched"
        folder.mkdir()
        stop_uploader(start_uploader(kafka_bootstrap, topic, after, folder=folder))  # `upload DIR` withdraws alike
        assert len(withdrawals(after)) == 1
        records = reader.read_all()
    finally:
        reader.close()
    in_process = sink.of(FileUploadStarted)[0].upload_id
    aborted = {rec.upload_id for rec in records if rec.kind == "abort"}
    assert in_process in aborted and len(aborted) == 2
    assert {wire.decode(rec.headers, 1 << 40).path for rec in records} == {"big.bin"}


def test_upload_file_interrupted_withdraws_its_upload_and_fails(kafka_bootstrap: str, topic: str,
                                                                  reader: TopicReader, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    write_random(big, 16 << 20, seed=5)
    with Background(*cli_upload(kafka_bootstrap, topic, big, "--queue-max-size", "1"), log=tmp_path / "u.log") as up:
        first = reader.wait_for("chunk", path="big.bin")
        up.proc.send_signal(signal.SIGINT)
        code = up.proc.wait(60)
        output = up.output()
    assert code == 1, output
    assert "Traceback" not in output
    assert [line for line in output.splitlines() if "failed" in line] == [
        "ERROR: upload failed: big.bin: stopped before it was completely sent"], output
    reader.wait_for("abort", first.upload_id)


def test_a_file_paused_mid_way_too_long_is_withdrawn_and_sent_again_whole_once_resumed(
        kafka_bootstrap: str, topic: str, reader: TopicReader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held_s = 0.5
    monkeypatch.setattr(upload_job, "HELD_MID_FILE_S", held_s)
    monkeypatch.setattr(upload_module, "HELD_MID_FILE_S", held_s)
    big = tmp_path / "big.bin"
    size, chunk_size = 2 << 20, 16384
    chunks = wire.chunk_count(size, chunk_size)  # 128: some 6 s, one record in flight at a time
    write_random(big, size, seed=6)
    sink = Recorder()

    def held_notices() -> list[Notice]:
        return [n for n in sink.of(Notice) if "paused mid-way" in n.message]

    # One record in flight at a time: the file is still being sent when the pause comes.
    uploader = start_uploader(kafka_bootstrap, topic, sink, queue_max_size=1, n_threads=1, chunk_size=chunk_size)
    try:
        uploader.enqueue_file(big)
        first = wait_until(lambda: sink.of(FileUploadStarted), "the upload to start")[0].upload_id
        wait_until(lambda: uploader.snapshot().chunks_delivered >= upload_job.REPORT_EVERY,
                   "its first chunks acknowledged", every=0.01)
        uploader.pause()
        # Had the file been sent whole before the pause took hold, no notice would come.
        [held] = wait_until(held_notices, "the notice that the paused file was withdrawn", timeout=30)
        assert held.level == "warning"
        assert held.message.startswith("big.bin was paused mid-way") and "withdrawn" in held.message and \
            "sent again from its start once resumed" in held.message, held.message
        reader.wait_for("abort", first)
        assert not sink.of(FileUploadFailed) and not sink.of(FileUploaded)
        # Queued again: its thread takes it up and waits at its first chunk. Held there for
        # longer than the limit, it is not withdrawn again (nothing of it was sent).
        second = wait_until(lambda: sink.of(FileUploadStarted)[1:], "the file to be taken up again")[0].upload_id
        time.sleep(3 * held_s)  # (a window to see nothing happen in, not a wait for something)
        assert len(held_notices()) == 1 and len(sink.of(FileUploadStarted)) == 2
        snap = uploader.snapshot()
        assert (snap.state, snap.files_in_progress, snap.files_done, snap.files_failed) == ("paused", 1, 0, 0)

        uploader.resume()
        [uploaded] = wait_until(lambda: sink.of(FileUploaded), "the file to be sent again", timeout=180)
        wait_until(uploader.idle, "the uploader to be idle")
        snap = uploader.snapshot()
        assert (snap.files_queued, snap.files_in_progress, snap.files_done, snap.files_failed) == (0, 0, 1, 0)
    finally:
        stop_uploader(uploader)
    assert not sink.of(FileUploadFailed)
    assert len(held_notices()) == 1
    assert [s.upload_id for s in sink.of(FileUploadStarted)] == [first, second] and first != second
    assert (uploaded.upload_id, uploaded.path, uploaded.size, uploaded.chunks) == (second, "big.bin", size, chunks)

    records = reader.read_all()
    assert [r.upload_id for r in records if r.kind == "abort"] == [first]
    assert {r.upload_id for r in records} == {first, second}
    sent_first = reader.count("chunk", first)
    assert upload_job.REPORT_EVERY <= sent_first < chunks and reader.count("end", first) == 0
    # One partition: the withdrawal reaches reconstructors before anything of the new upload.
    ids = [r.upload_id for r in records]
    assert ids.index(second) > [r.kind for r in records].index("abort") == ids.index(first) + sent_first
    again = [r for r in records if r.upload_id == second]
    assert [r.kind for r in again] == ["chunk"] * chunks + ["end"]
    assert [int(dict(r.headers)["msi.index"]) for r in again[:-1]] == list(range(chunks))
    meta = wire.decode(again[-1].headers, 1 << 40)
    assert (meta.upload_id, meta.path, meta.size, meta.chunk_size, meta.count) == (second, "big.bin", size, chunk_size,
                                                                                  chunks)

    # What a reconstructor makes of the topic: the first upload withdrawn, the file whole, once.
    out = tmp_path / "out"
    with reconstructing(kafka_bootstrap, topic, out) as rebuilt:
        [done] = wait_until(lambda: rebuilt.of(FileReconstructed), "the file rebuilt", timeout=180)
        [withdrawn] = wait_until(lambda: rebuilt.of(UploadNotRebuilt), "the first upload withdrawn")
    assert (done.path, done.upload_id, done.size, done.duplicate) == ("big.bin", second, size, False)
    assert (withdrawn.upload_id, withdrawn.outcome) == (first, "withdrawn")
    assert len(rebuilt.of(FileReconstructed)) == 1
    assert visible(out) == ["big.bin"]
    assert (out / "big.bin").read_bytes() == big.read_bytes()
