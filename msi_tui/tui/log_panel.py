"""The log: a bounded panel on screen and, optionally, the full history in a file."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import TextIO

from rich.text import Text
from textual.widgets import RichLog

from msi_tui.tui.formatting import LogLine

PROBLEMS = ("warning", "error")


class EventLog(RichLog):
    """The bounded log panel: per-file events, command output and errors, coloured by level.

    Its title counts the warnings and errors since the start (or the last `clear`); `errors`
    (F5) shows only those, kept apart so that a burst of ordinary lines never pushes them out.
    """

    DEFAULT_CSS = """
    EventLog {
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        overflow-y: auto;  /* RichLog always shows its track; only show it when it scrolls */
    }
    EventLog:focus { border: round $accent; }
    EventLog.-problems { border: round $warning; }
    """

    def __init__(self, max_lines: int, **kwargs: object) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, **kwargs)  # type: ignore[arg-type]
        self.kept: deque[LogLine] = deque(maxlen=max_lines)
        self.problems: deque[LogLine] = deque(maxlen=max_lines)
        self.counts = {"warning": 0, "error": 0}
        self.problems_only = False
        self.title_text = Text()
        """The border's title: counts of warnings and errors, and what F5 does."""
        self.show_title()

    def add(self, lines: list[LogLine]) -> None:
        """Append lines; only the last `max_lines` are rendered (older ones would be trimmed)."""
        self.kept.extend(lines)
        problems = [line for line in lines if line.level in PROBLEMS]
        self.problems.extend(problems)
        for line in problems:
            self.counts[line.level] += 1
        if problems:
            self.show_title()
        self._write(problems if self.problems_only else lines)

    def _write(self, lines: list[LogLine]) -> None:
        if self.max_lines is not None:
            lines = lines[-self.max_lines :]
        # Wrapped to the panel (RichLog would use the console's width, at least 78), with the
        # scrollbar's cell set aside so a line does not lose its end when the log scrolls.
        width = self.content_region.width - self.styles.scrollbar_size_vertical
        for line in lines:
            self.write(line.as_text(), width=width if width > 0 else None)

    def show_problems_only(self, on: bool) -> None:
        """Show only warnings and errors, or every line again (as many as the panel keeps)."""
        self.problems_only = on
        self.set_class(on, "-problems")
        super().clear()
        self._write(list(self.problems if on else self.kept))
        self.show_title()

    def clear(self) -> EventLog:
        """Empty the panel and reset its counts (the log file keeps everything)."""
        super().clear()
        self.kept.clear()
        self.problems.clear()
        self.counts = {"warning": 0, "error": 0}
        self.show_title()
        return self

    def show_title(self) -> None:
        errors, warnings = self.counts["error"], self.counts["warning"]
        title = Text("Log: warnings and errors only" if self.problems_only else "Log")
        title.append("  ")
        title.append(f"{errors} error{'' if errors == 1 else 's'}", style="bold red" if errors else "dim")
        title.append(" · ", style="dim")
        title.append(f"{warnings} warning{'' if warnings == 1 else 's'}", style="yellow" if warnings else "dim")
        title.append("  F5: all" if self.problems_only else "  F5: only these", style="dim")
        if title != self.title_text:
            self.title_text = title
            self.border_title = title


class LogFile:
    """Appends every log line to a file; a failure to write is reported once, not raised.

    The engine's logger rotates the same file by size (msi_tui.logfile): when the name no
    longer points at the file this one has open, it is opened again (as WatchedFileHandler)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: TextIO | None = None
        self._inode: tuple[int, int] | None = None
        self.error: str | None = None

    def open(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line buffered: the history survives a crash or a killed SSH session.
            self._file = self.path.open("a", encoding="utf-8", buffering=1)
            st = os.fstat(self._file.fileno())
            self._inode = (st.st_dev, st.st_ino)
        except OSError as exc:
            self.error = f"cannot write the log file {self.path}: {exc.strerror or exc}"

    def _rotated(self) -> bool:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def write(self, lines: list[LogLine]) -> None:
        if self._file is None:
            return
        try:
            if self._rotated():
                self.close()
                self.open()
                if self._file is None:
                    return
            self._file.write("".join(line.as_file_line() + "\n" for line in lines))
        except OSError as exc:
            self.error = f"log file write failed: {exc.strerror or exc}"
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
