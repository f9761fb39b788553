"""Pure text helpers shared by the panes, the log and `check` (no widgets, easy to test)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text

from msi_tui.engine.events import Event, FileUploadFailed
from msi_tui.engine.upload_job import STOPPED
from msi_tui.formatting import LogLevel, describe_event

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
    "sent": "",  # delivered to Kafka, not (yet) confirmed at the destination
    "sending": "cyan",
    "receiving": "cyan",
    "queued": "",
    "starting": "yellow",
    "connecting": "yellow",
    "paused": "yellow",
    "blocked": "bold red",
    "draining": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "unknown": "dim",
    "failed": "bold red",
    "quarantined": "bold red",
    "refused": "bold red",
    "abandoned": "bold red",
    "withdrawn": "dim",
    "handed over": "dim",
    "changed": "yellow",
    "held": "yellow",
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


def describe_in_app(event: Event) -> tuple[LogLevel, str]:
    """The log level and line for an event in the app: the console's words, except that a
    file the operator's quit cut short (they were asked) is a warning, not an error."""
    if isinstance(event, FileUploadFailed) and event.reason.startswith(STOPPED):
        return "warning", f"cut short by the quit: {event.path} (withdrawn)"
    return describe_event(event)


def progress_bar(done: int, total: int, width: int = 10) -> str:
    """A text bar plus percent, e.g. `█████░░░░░  50%`; a 0-chunk total counts as full."""
    fraction = 1.0 if total <= 0 else max(0.0, min(1.0, done / total))
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled) + f" {int(fraction * 100):>3}%"


def state_style(state: str) -> str:
    """The colour of a state; `<outcome> there` (a receipt: not published at the
    destination) is always an error."""
    return "bold red" if state.endswith(" there") else STATE_STYLES.get(state, "")


def styled_state(state: str) -> Text:
    """A state word coloured by meaning; the word itself carries the meaning in monochrome."""
    return Text(state, style=state_style(state))


def count(n: int | None) -> str:
    """An integer with thousands separators, or a dash when unknown."""
    return "–" if n is None else f"{n:,}"


def summary_line(state: str, parts: list[tuple[str, int, str]]) -> Text:
    """A pane's state word then `label n` counts separated by dots; each count has its style."""
    # A span, not the Text's base style: that would colour the whole line.
    text = Text.assemble((state, f"bold {state_style(state)}".strip()), "  ")
    return text.append_text(counts_line(parts))


def counts_line(parts: list[tuple[str, int, str]]) -> Text:
    """`label n` counts separated by dots; each count has its style (bold when none)."""
    text = Text()
    for i, (label, n, style) in enumerate(parts):
        if i:
            text.append(" · ", style="dim")
        text.append(f"{label} ")
        text.append(count(n), style=style or "bold")
    return text
