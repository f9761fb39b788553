"""Pure text helpers shared by the panes, the log and `check` (no widgets, easy to test)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from rich.text import Text

from msi_tui.engine.events import (
    Event,
    FileChangedDuringUpload,
    FileKeptBoth,
    FileQuarantined,
    FileQueued,
    FileReconstructed,
    FileUploaded,
    FileUploadFailed,
    FileUploadStarted,
    Notice,
    RecordRejected,
)

LogLevel = Literal["info", "success", "warning", "error"]

# Named ANSI colours (not hex) so a 16-colour terminal shows exactly what we meant.
LEVEL_STYLES: dict[LogLevel, str] = {
    "info": "",
    "success": "green",
    "warning": "yellow",
    "error": "bold red",
}
LEVEL_TAGS: dict[LogLevel, str] = {
    "info": "INFO",
    "success": "OK",
    "warning": "WARN",
    "error": "ERROR",
}

STATE_STYLES: dict[str, str] = {
    "watching": "green",
    "consuming": "green",
    "connected": "green",
    "done": "green",
    "verified": "green",
    "sending": "cyan",
    "receiving": "cyan",
    "queued": "",
    "starting": "yellow",
    "connecting": "yellow",
    "paused": "yellow",
    "draining": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "unknown": "dim",
    "failed": "bold red",
    "quarantined": "bold red",
    "unreachable": "bold red",
    "start failed": "bold red",
}


@dataclass(frozen=True)
class LogLine:
    """One line for the log panel and the log file."""

    at: float
    level: LogLevel
    message: str

    def clock_text(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.at))

    def as_text(self) -> Text:
        """The panel's rendering: dim time, then the message coloured by level."""
        text = Text(self.clock_text() + " ", style="dim")
        text.append(self.message, style=LEVEL_STYLES[self.level])
        return text

    def as_file_line(self) -> str:
        """The log file's rendering: full date, level tag, message."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        return f"{stamp} {LEVEL_TAGS[self.level]:<5} {self.message}"


def human_size(n: int | float) -> str:
    """Bytes as a short decimal figure: 0 B, 980 B, 1.2 kB, 45.0 MB, 1.07 GB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_rate(bytes_per_second: float | None) -> str:
    """A throughput in MB/s (the unit operators compare against their instrument)."""
    if bytes_per_second is None:
        return "– MB/s"
    return f"{bytes_per_second / 1e6:.1f} MB/s"


def progress_bar(done: int, total: int, width: int = 10) -> str:
    """A text bar plus percent, e.g. `█████░░░░░  50%`; a 0-chunk total counts as full."""
    fraction = 1.0 if total <= 0 else max(0.0, min(1.0, done / total))
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled) + f" {int(fraction * 100):>3}%"


def styled_state(state: str) -> Text:
    """A state word coloured by meaning; the word itself carries the meaning in monochrome."""
    return Text(state, style=STATE_STYLES.get(state, ""))


def count(n: int | None) -> str:
    """An integer with thousands separators, or a dash when unknown."""
    return "–" if n is None else f"{n:,}"


def describe_event(event: Event) -> tuple[LogLevel, str]:
    """The log level and one-line message for an engine event."""
    match event:
        case FileQueued(path=path, size=size):
            return "info", f"queued {path} ({human_size(size)})"
        case FileUploadStarted(path=path, size=size, chunks=chunks):
            return "info", f"sending {path} ({human_size(size)}, {chunks} chunks)"
        case FileUploaded(path=path, size=size, seconds=seconds):
            rate = size / seconds if seconds > 0 else None
            return "success", (
                f"uploaded {path} ({human_size(size)} in {seconds:.1f} s, {human_rate(rate)})"
            )
        case FileUploadFailed(path=path, reason=reason):
            return "error", f"upload failed: {path}: {reason}"
        case FileChangedDuringUpload(path=path):
            return "warning", f"{path} changed while sending; it will be sent again"
        case FileReconstructed(path=path, size=size, duplicate=True):
            return "info", f"duplicate of {path} ignored (already complete)"
        case FileReconstructed(path=path, size=size, seconds=seconds):
            return "success", f"reconstructed {path} ({human_size(size)}, verified, {seconds:.1f} s)"
        case FileQuarantined(path=path, reason=reason, quarantine_path=qpath):
            return "error", f"quarantined {path}: {reason} (kept in {qpath})"
        case RecordRejected(partition=partition, offset=offset, reason=reason):
            return "warning", f"rejected record p{partition}@{offset}: {reason}"
        case FileKeptBoth(path=path, saved_as=saved_as):
            return "warning", f"{path} already exists with other content; saved as {saved_as}"
        case Notice(level=level, message=message):
            return level, message
    return "info", repr(event)
