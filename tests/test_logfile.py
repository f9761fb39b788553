"""msi-tui.log: a client retrying a broker that is down does not fill it, and it is rotated."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from msi_tui import logfile


def test_repeats_are_counted_and_the_file_rotates(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(logfile, "MAX_BYTES", 2000)
    logfile.log_to_file(tmp_path / "msi-tui.log")
    log = logging.getLogger("msi_tui.kafka")
    try:
        for attempt in range(500):
            log.warning("FAIL [thrd:127.0.0.1:9092/1]: Connect to ipv4#127.0.0.1:9092 failed: Connection refused "
                        "(after %d ms in state CONNECT, %d identical error(s) suppressed)", attempt % 7, attempt)
        log.warning("another message")
        for i in range(60):
            logging.getLogger("msi_tui.upload").info("distinct message number %s%s", "x" * (i % 5), "y")
    finally:
        for handler in logging.getLogger("msi_tui").handlers[:]:
            if isinstance(handler, logging.handlers.RotatingFileHandler):
                logging.getLogger("msi_tui").removeHandler(handler)
                handler.close()
    text = "".join(p.read_text() for p in sorted(tmp_path.glob("msi-tui.log*")))
    assert text.count("Connection refused") == 1
    assert "(the previous message repeated 499 more times) another message" in text
    assert sorted(p.name for p in tmp_path.glob("msi-tui.log*"))[:2] == ["msi-tui.log", "msi-tui.log.1"]
    assert all(p.stat().st_size <= 2000 + 300 for p in tmp_path.glob("msi-tui.log*"))
