"""The log: a bounded panel on screen and, optionally, the full history in a file."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from textual.widgets import RichLog

from msi_tui.tui.formatting import LogLine


class EventLog(RichLog):
    """The bounded log panel: per-file events, command output and errors, coloured by level."""

    DEFAULT_CSS = """
    EventLog {
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        overflow-y: auto;  /* RichLog always shows its track; only show it when it scrolls */
    }
    EventLog:focus { border: round $accent; }
    """

    def __init__(self, max_lines: int, **kwargs: object) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, **kwargs)  # type: ignore[arg-type]
        self.border_title = "Log"

    def add(self, lines: list[LogLine]) -> None:
        """Append lines; only the last `max_lines` are rendered (older ones would be trimmed)."""
        if self.max_lines is not None:
            lines = lines[-self.max_lines :]
        # Wrapped to the panel (RichLog would use the console's width, at least 78), with the
        # scrollbar's cell set aside so a line does not lose its end when the log scrolls.
        width = self.content_region.width - self.styles.scrollbar_size_vertical
        for line in lines:
            self.write(line.as_text(), width=width if width > 0 else None)


class LogFile:
    """Appends every log line to a file; a failure to write is reported once, not raised."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: TextIO | None = None
        self.error: str | None = None

    def open(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line buffered: the history survives a crash or a killed SSH session.
            self._file = self.path.open("a", encoding="utf-8", buffering=1)
        except OSError as exc:
            self.error = f"cannot write the log file {self.path}: {exc.strerror or exc}"

    def write(self, lines: list[LogLine]) -> None:
        if self._file is None:
            return
        try:
            self._file.write("".join(line.as_file_line() + "\n" for line in lines))
        except OSError as exc:
            self.error = f"log file write failed: {exc.strerror or exc}"
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
