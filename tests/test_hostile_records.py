"""Records that are not ours, malformed or hostile: refused, reported, and the consumer goes on."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from msi_tui.engine import wire
from msi_tui.engine.config import load_config
from msi_tui.engine.events import FileKeptBoth, FileQuarantined, FileReconstructed, RecordRejected
from msi_tui.engine.kafka_records import produced
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from tests.helpers import Recorder, send_file, tree, wait_until

pytestmark = pytest.mark.kafka


def raw(producer: Producer, topic: str, value: bytes, headers: wire.Headers | None) -> None:
    producer.produce(topic, value, uuid.uuid4().hex, headers=None if headers is None else produced(headers))


def crafted(path: str, size: int = 10, override: dict[str, bytes] | None = None) -> wire.Headers:
    h = dict(wire.chunk_headers(wire.file_headers(uuid.uuid4().hex, path, size, 16384), 0))
    h.update(override or {})
    return list(h.items())


@pytest.fixture
def reconstructor(kafka_bootstrap: str, topic: str, tmp_path: Path):
    sink = Recorder()
    service = Reconstructor(load_config(bootstrap=kafka_bootstrap),
                            ReconstructSettings(output_dir=tmp_path / "out", topic=topic, n_threads=2,
                                                group_id=f"g-{topic}", partitions=4), sink)
    service.start()
    yield service, sink
    service.request_stop()
    assert service.wait_stopped(60)


def test_hostile_records_are_refused_and_good_files_still_arrive(
    reconstructor, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    service, sink = reconstructor
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "planted").symlink_to(outside)  # a symlink in the way must never be followed
    (out / "existing.txt").write_bytes(b"older content")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    abs_target = tmp_path / f"abs-{uuid.uuid4().hex}"
    hostile = [
        (b"hello", None),  # not ours: no headers
        (b"hello", [("content-type", b"text/plain")]),  # not ours: foreign headers
        (b"x" * 10, crafted("v.txt", override={"msi.v": b"99"})),  # unknown version
        (b"x" * 5, crafted("short.txt", size=10)),  # truncated chunk
        (b"x" * 10, crafted(str(abs_target))),  # absolute path
        (b"x" * 10, crafted("../escape.txt")),  # parent traversal
        (b"x" * 10, crafted("a/../../escape2.txt")),
        (b"x" * 10, crafted("nul\x00.txt")),
        (b"x" * 10, crafted("C:/windows.txt")),
        (b"x" * 10, crafted("huge.bin", size=10, override={"msi.size": str(1 << 50).encode(),
                                                          "msi.count": str((1 << 50) // 16384).encode()})),
    ]
    for value, headers in hostile:
        raw(producer, topic, value, headers)
    send_file(producer, topic, "planted/evil.txt", b"through the symlink")
    send_file(producer, topic, "corrupt.bin", b"payload", digest="00" * 16)  # (XXH3-128: 32 hex digits)
    send_file(producer, topic, "existing.txt", b"newer content")
    good = os.urandom(50_000)
    send_file(producer, topic, "good/file.bin", good)
    send_file(producer, topic, "empty.bin", b"")
    assert producer.flush(30) == 0

    wait_until(lambda: len(sink.of(FileReconstructed)) >= 3, "the good files")
    wait_until(lambda: len(sink.of(FileQuarantined)) >= 2, "the symlinked and corrupt files quarantined")
    assert len(sink.of(RecordRejected)) == len(hostile)
    reasons = " | ".join(e.reason for e in sink.of(RecordRejected))
    for expected in ("no headers", "not an msi-tui record", "version", "expected 10", "absolute", "forbidden part",
                     "control character", "drive letter", "over the limit"):
        assert expected in reasons
    files = {p: d for p, d in tree(out).items() if not p.startswith(".msi-tui-quarantine/")}
    assert files["good/file.bin"] == hashlib.sha256(good).hexdigest()
    assert files["empty.bin"] == hashlib.sha256(b"").hexdigest()
    assert (out / "existing.txt").read_bytes() == b"older content"  # never destroyed silently
    kept = sink.of(FileKeptBoth)
    assert kept and (out / kept[0].saved_as).read_bytes() == b"newer content"
    assert list(outside.iterdir()) == []
    assert not abs_target.exists()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape2.txt").exists()
    assert not (out / "corrupt.bin").exists()
    assert service.snapshot().records_rejected == len(hostile)
