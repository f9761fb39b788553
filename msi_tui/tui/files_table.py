"""A DataTable of per-file progress that updates in place at every refresh."""

from __future__ import annotations

from pathlib import PurePath

from rich.text import Text
from textual.widgets import DataTable

from msi_tui.engine.stats import FileProgress
from msi_tui.formatting import human_size
from msi_tui.tui.formatting import progress_bar, styled_state

MAX_ROWS = 100  # more rows cost refresh time and nobody scrolls that far in a live view

# Content widths (DataTable adds one cell of padding each side). `file` and `where` share
# what the others leave; `source` follows the longest source in view, within bounds.
FIXED_WIDTHS = {"size": 8, "chunks": 7, "progress": 15}
FILE_MIN = 20  # an optional column is left out rather than squeeze names below this
WHERE_MIN = 30  # `host:…/folder/name` is no use much shorter
SOURCE_WIDTHS = (6, 14)
PADDING = 2


def display_name(path: str, width: int = 40) -> str:
    """A path shortened from the left so the file name, the part that matters, stays."""
    if len(path) <= width:
        return path
    name = PurePath(path).name
    if len(name) >= width - 1:
        return "…" + name[-(width - 1) :]
    return "…" + path[-(width - 1) :]


def display_where(where: str, width: int) -> str:
    """`host:/out/path` shortened in the middle, so the host and the file name both stay;
    anything else (a reason) cut at the end."""
    if len(where) <= width:
        return where
    host, sep, path = where.partition(":")
    if sep and "/" in path and len(host) < width // 2:
        tail = display_name(path, width - len(host) - 1)
        cut = tail.find("/")  # from a folder boundary: `…/run-0412/x.h5`, not `…ed/run-0412/x.h5`
        return host + ":" + ("…" + tail[cut:] if 0 < cut < len(tail) - 1 else tail)
    return clip(where, width)


def clip(text: str, width: int) -> str:
    """`text` cut at the end to `width` cells, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def ordered_rows(files: tuple[FileProgress, ...]) -> list[FileProgress]:
    """Files in progress first (oldest first, as they finish in that order), then the most
    recently finished, bounded to MAX_ROWS."""
    active = [f for f in files if f.finished is None]
    finished = [f for f in files if f.finished is not None]
    finished.sort(key=lambda f: f.finished or 0.0, reverse=True)
    return (active + finished)[:MAX_ROWS]


Layout = tuple[tuple[str, int], ...]  # (column key, content width), in display order


class FilesTable(DataTable[str | Text]):
    """Recent files: name, [source], size, [chunks], a text progress bar, state, [where].

    Which optional columns show depends on the width: at 80 columns the name keeps its room
    and the pane shows a row's where on its border instead (see `highlighted`).

    `show()` is called at every refresh. When the layout and the set and order of files are
    unchanged it only rewrites the cells that changed; otherwise it rebuilds the rows and
    keeps the cursor on the same file, so an operator reading a row is not thrown off.
    """

    def __init__(self, state_labels: dict[str, str] | None = None, *, state_width: int = 11,
                 with_source: bool = False, with_where: bool = False, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self.state_labels = state_labels or {}
        self.state_width = state_width
        self.with_source = with_source
        self.with_where = with_where
        self.layout_now: Layout = ()
        self._keys: list[str] = []
        self.shown_files: list[FileProgress] = []
        self._cells: dict[str, tuple[str | Text, ...]] = {}

    def label(self, f: FileProgress) -> str:
        return self.state_labels.get(f.state, f.state)

    def highlighted(self) -> FileProgress | None:
        """The file under the cursor, if any."""
        return self.shown_files[self.cursor_row] if 0 <= self.cursor_row < len(self.shown_files) else None

    @property
    def shows_where(self) -> bool:
        return any(key == "where" for key, _ in self.layout_now)

    def any_where(self) -> bool:
        return any(f.where for f in self.shown_files)

    def detail(self, f: FileProgress, width: int) -> Text:
        """One file in full within about `width` cells: `path · sending`, `path · refused
        there: why`, or `verified at host:/out/path` (which holds the path already)."""
        state = styled_state(self.label(f))
        if f.state == "verified" and f.where.endswith("/" + f.path):
            text = Text.assemble(state, " at ")
        else:
            text = Text(f.path)
            if self.with_source and f.source:
                text.append(f" from {f.source}")
            text.append(" · ", style="dim")
            text.append_text(state)
            if f.where:
                text.append(" at " if f.state == "verified" else ": ")
        if f.where:
            text.append(display_where(f.where, max(WHERE_MIN, width - len(text))))
        return text

    def _available(self) -> int:
        # The scrollbar's cell is always set aside, so it showing up never changes the layout.
        width = self.content_region.width
        return width - self.styles.scrollbar_size_vertical if width else 76

    def _layout(self, rows: list[FileProgress]) -> Layout:
        """The columns that fit the width, optional ones while names keep FILE_MIN."""
        source_width = min(SOURCE_WIDTHS[1], max([SOURCE_WIDTHS[0], *(len(f.source) for f in rows)]))
        fixed = {**FIXED_WIDTHS, "state": self.state_width, "source": source_width, "where": WHERE_MIN}
        keys = ["file", *(["source"] if self.with_source else []), "size", "progress", "state"]
        left = self._available() - sum(fixed[k] + PADDING for k in keys[1:]) - PADDING
        for optional in (["where"] if self.with_where else []) + ["chunks"]:
            if left - fixed[optional] - PADDING >= FILE_MIN:
                keys.append(optional)
                left -= fixed[optional] + PADDING
        if "chunks" in keys:  # back to its usual place, after size
            keys.remove("chunks")
            keys.insert(keys.index("size") + 1, "chunks")
        # The name takes what it needs (columns stay together), the where what is left.
        widths = {k: fixed.get(k, 0) for k in keys}
        widths["file"] = max(12, min(left, max([FILE_MIN, *(len(f.path) for f in rows)])))
        if "where" in keys:
            widths["where"] += left - widths["file"]
        return tuple((k, widths[k]) for k in keys)

    def _cells_for(self, f: FileProgress, layout: Layout) -> tuple[str | Text, ...]:
        cells: list[str | Text] = []
        for key, width in layout:
            match key:
                case "file":
                    cells.append(display_name(f.path, width))
                case "source":
                    cells.append(clip(f.source, width) if f.source else Text("–", style="dim"))
                case "size":
                    cells.append(Text(human_size(f.size), justify="right"))
                case "chunks":
                    cells.append(Text(f"{f.chunks_done}/{f.chunks_total}", justify="right"))
                case "progress":
                    cells.append(progress_bar(f.chunks_done, f.chunks_total))
                case "state":
                    cells.append(styled_state(self.label(f)))
                case "where":
                    cells.append(display_where(f.where, width))
        return tuple(cells)

    def show(self, files: tuple[FileProgress, ...]) -> None:
        """Bring the table in line with a snapshot's files."""
        rows = ordered_rows(files)
        keys = [f"{f.path}\0{f.started}" for f in rows]
        layout = self._layout(rows)
        cells = {key: self._cells_for(f, layout) for key, f in zip(keys, rows)}
        selected = self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None
        if layout != self.layout_now:
            self.clear(columns=True)
            for key, width in layout:
                self.add_column(key, width=width, key=key)
            self._keys = []  # every row is added again below
        if keys == self._keys:
            for key in keys:
                old, new = self._cells[key], cells[key]
                for (column, _), before, after in zip(layout, old, new):
                    if before != after:
                        self.update_cell(key, column, after)
        else:
            self.clear()
            for key in keys:
                self.add_row(*cells[key], key=key)
            if selected in cells:
                self.move_cursor(row=keys.index(selected), animate=False, scroll=False)
        self.layout_now = layout
        self._keys = keys
        self.shown_files = rows
        self._cells = cells
