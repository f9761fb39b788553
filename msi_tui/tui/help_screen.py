"""The help screen: every typed command, every key, and a glossary of every word and figure
shown, from the same lists the app uses."""

from __future__ import annotations

import textwrap

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen

from msi_tui.tui.commands import COMMANDS
from msi_tui.tui.framed import framed, framed_css
from msi_tui.tui.glossary import GLOSSARY

# One Text wrapped here, not Rich tables: laying out a table of a hundred rows each time help
# opened kept the keys waiting. 74 cells fit the screen at 80 columns.
WIDTH = 74


def _section(text: Text, heading: str, rows: list[tuple[str, str]]) -> None:
    """`heading`, then each (term, meaning) with the meaning wrapped beside the terms."""
    if text:
        text.append("\n")
    for line in textwrap.wrap(heading, WIDTH):
        text.append(line + "\n", style="bold underline")
    indent = min(30, max(len(term) for term, _ in rows)) + 2
    for term, meaning in rows:
        lines = textwrap.wrap(meaning, WIDTH - indent) or [""]
        if len(term) > indent - 2:  # a long term has the line to itself
            text.append(term + "\n", style="bold")
            text.append(" " * indent)
        else:
            text.append(term.ljust(indent), style="bold")
        text.append(lines[0] + "\n")
        for line in lines[1:]:
            text.append(" " * indent + line + "\n")


def help_table(keys: list[tuple[str, str]]) -> Text:
    """Commands (with aliases), keys, then the glossary, under headings."""
    text = Text()
    _section(text, "Commands", [(spec.usage, spec.help + (f" ({', '.join(spec.aliases)})" if spec.aliases else ""))
                                for spec in COMMANDS])
    _section(text, "Keys", [*keys,
                            ("any letter", "typed anywhere, goes to the command bar (a leading : or / is fine)"),
                            ("Esc", "from the command bar to the files table: ↑↓ rows, Enter a file's details")])
    for heading, words in GLOSSARY:
        _section(text, heading, list(words))
    text.rstrip()
    return text


class HelpScreen(Screen[None]):
    """A modal list of commands, keys and words; any of escape, F1 or q closes it."""

    DEFAULT_CSS = framed_css("HelpScreen", 88)

    BINDINGS = [
        Binding("escape,f1,q", "dismiss", "Close help", id="close_help"),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys
        self.table = help_table(keys)

    def compose(self) -> ComposeResult:
        yield framed(self.table, "msi-tui help", "help-text")
