"""The help screen: every typed command and every key, from the same lists the app uses."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from msi_tui.tui.commands import COMMANDS


def help_table(keys: list[tuple[str, str]]) -> Table:
    """Commands (with aliases) then keys, as one two-column table."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row(Text("Commands", style="bold underline"), "")
    for spec in COMMANDS:
        aliases = f" ({', '.join(spec.aliases)})" if spec.aliases else ""
        table.add_row(spec.usage, Text(spec.help + aliases))
    table.add_row("", "")
    table.add_row(Text("Keys", style="bold underline"), "")
    for key, description in keys:
        table.add_row(key, description)
    return table


class HelpScreen(ModalScreen[None]):
    """A modal list of commands and keys; any of escape, F1 or q closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 88;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen Static { width: 1fr; }
    """

    BINDINGS = [
        Binding("escape,f1,q", "dismiss", "Close help", id="close_help"),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys
        self.table = help_table(keys)

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "msi-tui help"
            scroll.border_subtitle = "Esc to close"
            yield Static(self.table, id="help-text")
