"""A DataTable of per-file progress that updates in place at every refresh."""

from __future__ import annotations

from pathlib import PurePath

from rich.text import Text
from textual.widgets import DataTable

from msi_tui.engine.stats import FileProgress
from msi_tui.formatting import human_size
from msi_tui.tui.formatting import progress_bar, styled_state

MAX_ROWS = 100  # more rows cost refresh time and nobody scrolls that far in a live view
COLUMNS = ("file", "size", "chunks", "progress", "state")


def display_name(path: str, width: int = 40) -> str:
    """A path shortened from the left so the file name, the part that matters, stays."""
    if len(path) <= width:
        return path
    name = PurePath(path).name
    if len(name) >= width - 1:
        return "…" + name[-(width - 1) :]
    return "…" + path[-(width - 1) :]


def ordered_rows(files: tuple[FileProgress, ...]) -> list[FileProgress]:
    """Files in progress first (oldest first, as they finish in that order), then the most
    recently finished, bounded to MAX_ROWS."""
    active = [f for f in files if f.finished is None]
    finished = [f for f in files if f.finished is not None]
    finished.sort(key=lambda f: f.finished or 0.0, reverse=True)
    return (active + finished)[:MAX_ROWS]


class FilesTable(DataTable[str | Text]):
    """Recent files: name, size, chunks done/total, a text progress bar, and state.

    `show()` is called at every refresh. When the set and order of files is unchanged it
    only rewrites the cells that changed; otherwise it rebuilds the rows and keeps the
    cursor on the same file, so an operator reading a row is not thrown off by new files.
    """

    def __init__(self, state_labels: dict[str, str] | None = None, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self.state_labels = state_labels or {}
        self._keys: list[str] = []
        self._cells: dict[str, tuple[str | Text, ...]] = {}

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column, key=column)

    def _name_width(self) -> int:
        # The other columns take about 54 cells with padding; the name gets the rest.
        width = self.scrollable_content_region.width
        return max(16, width - 54) if width else 24

    def _cells_for(self, f: FileProgress, name_width: int) -> tuple[str | Text, ...]:
        state = self.state_labels.get(f.state, f.state)
        return (
            display_name(f.path, name_width),
            Text(human_size(f.size), justify="right"),
            Text(f"{f.chunks_done}/{f.chunks_total}", justify="right"),
            progress_bar(f.chunks_done, f.chunks_total),
            styled_state(state),
        )

    def show(self, files: tuple[FileProgress, ...]) -> None:
        """Bring the table in line with a snapshot's files."""
        rows = ordered_rows(files)
        keys = [f"{f.path}\0{f.started}" for f in rows]
        name_width = self._name_width()
        cells = {key: self._cells_for(f, name_width) for key, f in zip(keys, rows)}
        if keys == self._keys:
            for key in keys:
                old, new = self._cells[key], cells[key]
                for column, before, after in zip(COLUMNS, old, new):
                    if before != after:
                        self.update_cell(key, column, after)
        else:
            selected = self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None
            self.clear()
            for key in keys:
                self.add_row(*cells[key], key=key)
            if selected in cells:
                self.move_cursor(row=keys.index(selected), animate=False, scroll=False)
        self._keys = keys
        self._cells = cells
