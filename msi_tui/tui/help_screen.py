"""The help screen: every typed command, every key, and a glossary of every word and figure
shown, from the same lists the app uses."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from msi_tui.tui.commands import COMMANDS
from msi_tui.tui.glossary import GLOSSARY


def _grid() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=12)
    table.add_column()
    return table


def help_table(keys: list[tuple[str, str]]) -> Group:
    """Commands (with aliases), keys, then the glossary: two-column tables under headings."""
    table = _grid()
    table.add_row(Text("Commands", style="bold underline"), "")
    for spec in COMMANDS:
        aliases = f" ({', '.join(spec.aliases)})" if spec.aliases else ""
        table.add_row(Text(spec.usage), Text(spec.help + aliases))  # Text: `[upload|...]` is no markup
    table.add_row("", "")
    table.add_row(Text("Keys", style="bold underline"), "")
    for key, description in keys:
        table.add_row(Text(key), Text(description))
    table.add_row("any letter", "typed anywhere, goes to the command bar (a leading : or / is fine)")
    table.add_row("Esc", "from the command bar to the files table: ↑↓ rows, Enter a file's details")
    parts: list[Table | Text] = [table]
    for heading, words in GLOSSARY:
        parts.append(Text("\n" + heading, style="bold underline"))
        grid = _grid()
        for word, meaning in words:
            grid.add_row(word, Text(meaning))
        parts.append(grid)
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    """A modal list of commands, keys and words; any of escape, F1 or q closes it."""

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
