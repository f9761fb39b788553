"""The log file `msi-tui.log`: librdkafka's and our diagnostics, never over the operator's
screen. Rotated by size, and a message that repeats (a client retrying a broker that is down
logs each attempt) is written once, then counted."""

from __future__ import annotations

import logging
import logging.handlers
import re
import time
from pathlib import Path

MAX_BYTES = 5_000_000
BACKUPS = 3  # msi-tui.log.1 ... .3 kept beside it
REPEAT_WINDOW_S = 60.0  # a repeat is counted for at most this long, then written again
_NUMBERS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Lets a message through unless it is the same as the last one (numbers aside: attempt
    counts, durations, ports); what was held back is told, with its count, when another
    message comes or the window ends."""

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[str, str, int] | None = None  # logger, message shape, level
        self._held = 0
        self._since = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        shape = (record.name, _NUMBERS.sub("#", record.getMessage()), record.levelno)
        now = time.monotonic()
        if shape == self._last and now - self._since < REPEAT_WINDOW_S:
            self._held += 1
            return False
        if self._held:
            record.msg = f"(the previous message repeated {self._held} more times) {record.getMessage()}"
            record.args = ()
        self._last, self._held, self._since = shape, 0, now
        return True


def log_to_file(path: Path) -> Path:
    """Send the `msi_tui` loggers (librdkafka's included) to `path`, rotated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger("msi_tui")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path
