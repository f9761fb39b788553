"""The command bar: an Input with completion for commands, pane names and file paths."""

from __future__ import annotations

import os

from textual.binding import Binding
from textual.suggester import Suggester
from textual.widgets import Input

from msi_tui.tui.commands import COMMANDS, PANES, PREFIXES

MAX_LISTED = 2000  # do not stall the UI listing a huge folder for a suggestion
HISTORY = 100


def suggest_path(prefix: str) -> str | None:
    """Complete a partly typed path from the file system (the first match, sorted)."""
    head, start = os.path.split(os.path.expanduser(prefix))
    show_hidden = start.startswith(".")
    candidates: list[str] = []
    try:
        with os.scandir(head or ".") as entries:
            for i, entry in enumerate(entries):
                if i >= MAX_LISTED:
                    break
                if not entry.name.startswith(start) or (entry.name[:1] == "." and not show_hidden):
                    continue
                candidate = entry.name + (os.sep if entry.is_dir() else "")
                if candidate != start:
                    candidates.append(candidate)
    except OSError:
        return None
    if not candidates:
        return None
    return prefix + min(candidates)[len(start) :]


class CommandSuggester(Suggester):
    """Suggests the rest of a command name, a pane name, or a path after `upload `."""

    def __init__(self) -> None:
        # No cache: the folder listing changes as the instrument writes files.
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if value[:1] in PREFIXES and len(value) > 1:  # `:show rec` completes like `show rec`
            suggestion = await self.get_suggestion(value[1:])
            return value[0] + suggestion if suggestion else None
        word, space, rest = value.partition(" ")
        if not space:
            if not word:
                return None
            for spec in COMMANDS:
                if spec.name.startswith(word.lower()) and spec.name != word:
                    return spec.name
            return None
        if word in ("pause", "resume", "show", "pane"):
            for pane in PANES:
                if rest and pane.startswith(rest) and pane != rest:
                    return f"{word} {pane}"
            return None
        if word == "upload" and rest:
            completed = suggest_path(rest)
            return f"{word} {completed}" if completed else None
        return None


class CommandBar(Input):
    """Where the operator types `check`, `quit`, `upload PATH`…; ↑/↓ walk the history."""

    DEFAULT_CSS = """
    CommandBar {
        border: none;
        height: 1;
        padding: 0 1;
        background: $boost;
    }
    CommandBar:focus { border: none; background: $boost; }
    CommandBar > .input--placeholder { color: $text-muted; }
    """

    PLACEHOLDERS = {
        True: "type a command: check · show FILE · upload PATH · errors · help · quit",
        False: "(a table has the keys: ↑↓ rows, Enter details) · type any letter for a command",
    }

    BINDINGS = [
        Binding("up", "history(-1)", "Previous", show=False, id="history_previous"),
        Binding("down", "history(1)", "Next", show=False, id="history_next"),
        Binding("escape", "app.focus_panes", "Leave", show=False, id="leave_command_bar"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            placeholder=self.PLACEHOLDERS[True],
            suggester=CommandSuggester(),
            select_on_focus=False,  # a key typed elsewhere comes back with the focus: keep it
            **kwargs,  # type: ignore[arg-type]
        )
        self.history: list[str] = []
        self._history_index = 0

    def on_focus(self) -> None:
        self.placeholder = self.PLACEHOLDERS[True]
        if self.parent is not None:  # the row's prompt lights up (app.tcss)
            self.parent.add_class("-typing")

    def on_blur(self) -> None:
        self.placeholder = self.PLACEHOLDERS[False]
        if self.parent is not None:
            self.parent.remove_class("-typing")

    def remember(self, line: str) -> None:
        """Add a submitted line to the history (no repeats in a row)."""
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-HISTORY]
        self._history_index = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._history_index = max(0, min(len(self.history), self._history_index + step))
        self.value = self.history[self._history_index] if self._history_index < len(self.history) else ""
        self.cursor_position = len(self.value)
