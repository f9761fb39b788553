"""A file's details carry the digest the uploader sent, on both sides, so an operator can
check a copy by hand (`xxhsum -H2 FILE`)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
import xxhash
from rich.console import Console

from msi_tui.engine.config import load_config
from msi_tui.engine.events import FileVerified
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from msi_tui.tui.file_detail import Side, detail_view
from tests.helpers import Recorder, start_uploader, stop_uploader, wait_until
from tests.test_upload_abort import make_topic


@pytest.mark.kafka
def test_both_sides_show_the_digest_the_uploader_sent(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    make_topic(kafka_bootstrap, topic)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    data = os.urandom(300_000)
    (folder / "trace.trc").write_bytes(data)
    sent_events = Recorder()
    rebuilder = Reconstructor(load_config(bootstrap=kafka_bootstrap),
                              ReconstructSettings(output_dir=out, topic=topic, n_threads=1, group_id=f"g-{topic}",
                                                  partitions=1), Recorder())
    rebuilder.start()
    uploader = start_uploader(kafka_bootstrap, topic, sent_events, folder)
    try:
        wait_until(lambda: sent_events.of(FileVerified), "the file verified", timeout=60)
    finally:
        stop_uploader(uploader)
        rebuilder.request_stop()
        assert rebuilder.wait_stopped(60)
    expected = f"XXH3-128 {xxhash.xxh3_128_hexdigest(data)}"
    [sent] = uploader.snapshot().files
    [rebuilt] = rebuilder.snapshot().files
    assert sent.digest == rebuilt.digest == expected
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(detail_view([Side("upload", sent), Side("reconstruct", rebuilt)], time.time()))
    shown = console.export_text()
    assert shown.count(f"digest sent  {expected}") == 2, shown
