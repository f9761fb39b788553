"""The lag the Reconstruct pane shows: records in the topic that this group has yet to read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka import Producer

from msi_tui.engine.config import load_config
from msi_tui.engine.events import FileReconstructed
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from tests.helpers import Recorder, send_file, wait_until

pytestmark = pytest.mark.kafka


def test_a_restarted_group_with_everything_read_has_no_lag(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    settings = ReconstructSettings(output_dir=tmp_path / "out", topic=topic, group_id=f"g-{topic}", partitions=3)
    config = load_config(bootstrap=kafka_bootstrap)
    first = Reconstructor(config, settings, sink := Recorder())
    first.start()  # (creates the topic with its 3 partitions)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(6):
        send_file(producer, topic, f"f{i}.bin", os.urandom(40_000))
    assert producer.flush(30) == 0
    wait_until(lambda: len(sink.of(FileReconstructed)) == 6, "every file rebuilt")
    first.request_stop()
    assert first.wait_stopped(60)

    # Same group again: its committed offsets are at the end of every partition, so nothing
    # is read and the consumer has no position of its own yet; the lag must still be 0.
    second = Reconstructor(config, settings, Recorder())
    second.start()
    try:
        wait_until(lambda: len(second._lag) == 3, "a lag figure for every partition")
        assert second._lag == {0: 0, 1: 0, 2: 0}
        assert second.snapshot().lag == 0
    finally:
        second.request_stop()
        assert second.wait_stopped(60)
