"""A full output disk pauses reconstruction with a clear message; it resumes by itself."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Producer

from msi_tui.engine.config import load_config
from msi_tui.engine.events import FileReconstructed, Notice
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from tests.helpers import Recorder, send_file, wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs as the output folder (mounting needs root, which CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_blocks_then_resumes_without_losing_or_corrupting(
    kafka_bootstrap: str, topic: str, small_disk: Path
) -> None:
    out = small_disk / "out"
    sink = Recorder()
    service = Reconstructor(load_config(bootstrap=kafka_bootstrap),
                            ReconstructSettings(output_dir=out, topic=topic, n_threads=1, group_id=f"g-{topic}",
                                                partitions=1), sink)
    service.start()
    try:
        files = {f"f{i}.bin": os.urandom(700_000) for i in range(5)}  # 3.5 MB into 2 MiB
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for name, data in files.items():
            send_file(producer, topic, name, data)
        assert producer.flush(30) == 0
        wait_until(lambda: any("No space left" in n.message for n in sink.of(Notice)), "the disk-full notice")
        assert service.snapshot().state == "blocked"
        for name in os.listdir(out):  # whatever was published before the disk filled is whole
            if not name.startswith("."):
                assert hashlib.sha256((out / name).read_bytes()).digest() == hashlib.sha256(files[name]).digest()
        assert len([n for n in sink.of(Notice) if "No space left" in n.message]) == 1  # said once, not per retry
        subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
        wait_until(lambda: len(sink.of(FileReconstructed)) == len(files), "every file after space returned")
        for name, data in files.items():
            assert (out / name).read_bytes() == data
        assert any("resumed" in n.message for n in sink.of(Notice))
        assert service.snapshot().state == "consuming"
    finally:
        service.request_stop()
        assert service.wait_stopped(60)
