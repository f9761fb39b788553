"""One file in full: Enter on a row, or `show FILE`. What each side (the uploader here, the
reconstructor here) knows of it: path, source, size, chunks, partition, upload id, each stage
with its time, where it went or why not, and the outcome. Redrawn at every refresh while open."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from msi_tui.engine.stats import FileProgress
from msi_tui.formatting import average_rate, fraction_done, human_size, short_count, short_duration, short_rate
from msi_tui.tui.formatting import styled_state
from msi_tui.tui.framed import framed, framed_css

# The words the panes use for a state (a delivered upload is only "sent" until a receipt).
STATE_WORDS = {"upload": {"done": "sent"}, "reconstruct": {"done": "verified"}}


@dataclass(frozen=True)
class Side:
    """What one service knows of the file: "upload" or "reconstruct", and its row."""

    service: str
    file: FileProgress


def clock(at: float) -> str:
    """`12:00:09.2` (local time, tenths)."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 10) % 10}"


def took(seconds: float) -> str:
    """`0.2 s`, `12.3 s`, `2 min 05 s`, `1 h 02 min`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s < 3600 else f"{s // 3600} h {s % 3600 // 60:02d} min"


def stages(side: Side) -> Text:
    """Each state the file went through, with its time and how long after the one before."""
    words = STATE_WORDS.get(side.service, {})
    history = side.file.history or ((side.file.state, side.file.started),)
    text = Text()
    for i, (state, at) in enumerate(history):
        if i:
            text.append("\n")
        text.append(clock(at) + "  ", style="dim")
        text.append_text(styled_state(words.get(state, state)))
        if i:
            text.append(f"  +{took(at - history[i - 1][1])}", style="dim")
    if len(history) > 1:
        text.append(f"\nin all {took(history[-1][1] - history[0][1])}", style="dim")
    return text


def side_table(side: Side, now: float) -> Table:
    """One service's view of the file as a two-column grid."""
    f, words = side.file, STATE_WORDS.get(side.service, {})
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=len("reconstruct"))  # both sides line up
    table.add_column()
    table.add_row(Text(side.service, style="bold underline"), "")
    table.add_row("path", Text(f.path))
    table.add_row("source", Text(f.source or "(none given)"))
    table.add_row("size", f"{human_size(f.size)} ({f.size:,} bytes)")
    chunks = f"{f.chunks_done:,} of {f.chunks_total:,} ({int(fraction_done(f) * 100)} %)"
    if f.chunks_total >= 1000:
        chunks += f", {short_count(f.chunks_done)}/{short_count(f.chunks_total)}"
    table.add_row("chunks", chunks)
    rate = average_rate(f, now)
    if rate is not None:
        pace = f"{short_rate(rate)} on average"
        if f.finished is None and rate > 0:
            pace += f", about {short_duration((1 - fraction_done(f)) * f.size / rate)} left"
        table.add_row("rate", pace)
    table.add_row("partition", str(f.partition) if f.partition >= 0 else "–")
    table.add_row("upload id", f.upload_id or "–")
    if f.digest:  # the uploader's; a verified copy has it too (`xxhsum -H2 FILE`, `sha256sum FILE`)
        table.add_row("digest sent", Text(f.digest))
    state = styled_state(words.get(f.state, f.state))
    table.add_row("outcome" if f.finished is not None else "state",
                  state if f.finished is not None else Text.assemble(state, (" (in flight)", "dim")))
    if f.where:
        table.add_row("where" if f.state == "verified" else "why", Text(f.where))
    elif side.service == "upload" and f.state == "done":
        table.add_row("where", Text("no receipt yet from a reconstructor", style="dim"))
    table.add_row("stages", stages(side))
    return table


def detail_view(sides: list[Side], now: float) -> Group:
    """Every side's table, one under the other."""
    parts: list[Table | Text] = []
    for i, side in enumerate(sides):
        if i:
            parts.append(Text(""))
        parts.append(side_table(side, now))
    return Group(*parts)


class FileDetailScreen(ModalScreen[None]):
    """A modal view of one file; Esc, Enter or q closes it. The app calls `follow()` at every
    refresh with the file's latest rows, so a file in flight is seen moving."""

    DEFAULT_CSS = framed_css("FileDetailScreen", 100)

    BINDINGS = [
        Binding("escape,enter,q", "dismiss", "Close", id="close_detail"),
    ]

    def __init__(self, sides: list[Side], now: float) -> None:
        super().__init__()
        self.sides = sides
        self.key = sides[0].file.upload_id or sides[0].file.path
        self.now = now
        self.view = detail_view(sides, now)
        """What is on screen (a Rich renderable)."""

    def compose(self) -> ComposeResult:
        yield framed(self.view, Text(self.sides[0].file.path), "detail-text")

    def follow(self, sides: list[Side], now: float) -> None:
        """Redraw with the file's latest rows (none: it left the services' tables; keep the last)."""
        if not sides or (sides == self.sides and now == self.now):
            return
        self.sides, self.now = sides, now
        self.view = detail_view(sides, now)
        self.query_one("#detail-text", Static).update(self.view)
