"""What the upload and reconstruct panes share: a title, status lines, a rate and an error."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import DescendantBlur, DescendantFocus
from textual.widgets import DataTable, Sparkline, Static

from msi_tui.formatting import human_rate
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.throughput import WINDOW_S, RateMeter


class Line(Static):
    """A Static for 5 Hz updates: skips repaint when its content did not change, and a
    `fixed` line (one row, its width set by CSS) repaints without a layout pass, which
    otherwise re-lays out the whole screen on every tick."""

    DEFAULT_CSS = "Line { height: auto; } Line.-fixed { height: 1; }"

    _last: Text | str | None = None

    def __init__(self, content: Text | str = "", *, fixed: bool = False, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.fixed = fixed
        self.set_class(fixed, "-fixed")

    def set(self, content: Text | str) -> None:
        if content != self._last:
            self._last = content
            self.update(content, layout=not self.fixed)


class ServicePane(Vertical):
    """A bordered pane for one service: status lines, rate + sparkline, error banner, table."""

    DEFAULT_CSS = """
    ServicePane {
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
        height: 1fr;
        border-subtitle-align: left;
        border-subtitle-color: $text;
    }
    ServicePane:focus-within { border: round $accent; }
    ServicePane .rate-row { height: 1; }
    ServicePane .rate { width: 36; padding-right: 1; }  /* fixed: the figure repaints without a layout pass */
    ServicePane Sparkline { width: 1fr; max-width: 120; height: 1; }
    ServicePane Sparkline > .sparkline--max-color { color: $accent; }
    ServicePane Sparkline > .sparkline--min-color { color: $primary; }
    ServicePane FilesTable { scrollbar-size-vertical: 1; }
    ServicePane .error-banner {
        display: none;
        color: $text;
        background: $error;
        text-style: bold;
        padding: 0 1;
    }
    ServicePane.-error .error-banner { display: block; }
    /* No service (absent) or no start: figures and an empty table would only be noise. */
    ServicePane.-error .rate-row, ServicePane.-error FilesTable,
    ServicePane.-absent .rate-row, ServicePane.-absent FilesTable,
    ServicePane.-absent .summary { display: none; }
    ServicePane FilesTable { height: 1fr; }
    """

    title = "Service"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.border_title = self.title
        self.meter = RateMeter()
        self.start_error: str | None = None
        self.detail_shown = Text()

    # --- the bottom border: the highlighted file in full ----------------------------------

    def show_detail(self) -> None:
        """While the table has focus, the highlighted file's full path, state and where it
        went (at 80 columns the table has no room for the where); otherwise, if some file
        has a where the table hides, how to see it (Enter opens the file's details)."""
        table = self.query_one(FilesTable)
        f = table.highlighted() if table.has_focus else None
        if f is not None:
            text = table.detail(f, self.size.width - 6)  # the border's corners and spacing
        elif not table.shows_where and table.any_where():
            text = Text("Esc, ↑↓, Enter: each file in full", style="dim")
        else:
            text = Text()
        if text != self.detail_shown:
            self.detail_shown = text
            self.border_subtitle = text

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def on_descendant_focus(self, _event: DescendantFocus) -> None:
        self.show_detail()

    def on_descendant_blur(self, _event: DescendantBlur) -> None:
        self.show_detail()

    def compose_rate_row(self) -> ComposeResult:
        with Horizontal(classes="rate-row"):
            yield Line(human_rate(None), fixed=True, classes="rate")
            yield Sparkline([], summary_function=max)

    def show_rate(self, total_bytes: int, at: float, extra: Text | str = "") -> None:
        """Feed the meter and redraw the rate figure and its sparkline."""
        before = self.meter.readings
        rate = self.meter.update(total_bytes, at)
        text = Text.assemble((human_rate(rate), "bold"), (f" {WINDOW_S:g} s avg", "dim"))
        if extra:
            text.append("  ")
            text.append(extra)
        self.query_one(".rate", Line).set(text)
        if self.meter.readings != before:
            self.query_one(Sparkline).data = list(self.meter.samples)

    def show_start_error(self, message: str) -> None:
        """Put a start failure in a red banner at the top of the pane; the app keeps going."""
        self.start_error = message
        self.query_one(".error-banner", Static).update(f"✗ could not start: {message}")
        self.add_class("-error")

    def compose_error_banner(self) -> ComposeResult:
        yield Static("", classes="error-banner")
