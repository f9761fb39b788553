"""A DataTable of per-file progress that updates in place at every refresh."""

from __future__ import annotations

from pathlib import PurePath

from rich.text import Text
from textual.widgets import DataTable

from msi_tui.engine.stats import FileProgress
from msi_tui.formatting import fraction_done, human_size, short_count, short_duration, short_rate
from msi_tui.tui.formatting import progress_bar, styled_state
from msi_tui.tui.throughput import FileRates

MAX_ROWS = 100  # more rows cost refresh time and nobody scrolls that far in a live view

# Content widths (DataTable adds one cell of padding each side), wide enough for every value
# (never cut): `7.5k/19.2k`, `999.9 MB`, `183 MB/s`, `1h05m`. `file` and `where` share what
# the others leave; `source` follows the longest source in view, within bounds.
FIXED_WIDTHS = {"size": 8, "chunks": 11, "progress": 4, "bar": 15, "rate": 8, "eta": 5}
LABELS = {"progress": "done", "eta": "left"}
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


def ordered_rows(files: tuple[FileProgress, ...]) -> tuple[list[FileProgress], int]:
    """Files in flight first, in the order they started (stable: a row never jumps), then the
    most recently finished, bounded to MAX_ROWS; and how many are in flight."""
    active = sorted((f for f in files if f.finished is None), key=lambda f: (f.started, f.upload_id))
    finished = [f for f in files if f.finished is not None]
    finished.sort(key=lambda f: f.finished or 0.0, reverse=True)
    return (active + finished)[:MAX_ROWS], min(len(active), MAX_ROWS)


Layout = tuple[tuple[str, int], ...]  # (column key, content width), in display order


class FilesTable(DataTable[str | Text]):
    """Recent files: name, [source], size, [chunks], done (with a bar when wide), this file's
    rate and time left, state, [where].

    Files in flight are pinned at the top (fixed rows: they never scroll away), the newest
    outcomes below them. Which optional columns show depends on the width: at 80 columns the
    name keeps its room and the pane shows a row's where on its border instead (see
    `highlighted`); Enter on a row opens the file's details.

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
        self.rates = FileRates()
        self.in_flight = 0

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
        keys = ["file", *(["source"] if self.with_source else []), "size", "progress", "rate", "eta", "state"]
        left = self._available() - sum(fixed[k] + PADDING for k in keys[1:]) - PADDING
        for optional in (["where"] if self.with_where else []) + ["chunks", "bar"]:
            # The bar widens the done column; the others are columns of their own.
            cost = fixed["bar"] - fixed["progress"] if optional == "bar" else fixed[optional] + PADDING
            if left - cost >= FILE_MIN:
                keys.append(optional)
                left -= cost
        widths = {k: fixed.get(k, 0) for k in keys}
        if "bar" in keys:
            keys.remove("bar")
            widths["progress"] = fixed["bar"]
        if "chunks" in keys:  # back to its usual place, after size
            keys.remove("chunks")
            keys.insert(keys.index("size") + 1, "chunks")
        # The name takes what it needs (columns stay together), the where what is left.
        widths["file"] = max(12, min(left, max([FILE_MIN, *(len(f.path) for f in rows)])))
        if "where" in keys:
            widths["where"] += left - widths["file"]
        return tuple((k, widths[k]) for k in keys)

    def _cells_for(self, f: FileProgress, layout: Layout, at: float) -> tuple[str | Text, ...]:
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
                    cells.append(Text(f"{short_count(f.chunks_done)}/{short_count(f.chunks_total)}",
                                      justify="right"))
                case "progress":
                    if width >= FIXED_WIDTHS["bar"]:
                        cells.append(progress_bar(f.chunks_done, f.chunks_total))
                    else:
                        cells.append(Text(f"{int(fraction_done(f) * 100)}%", justify="right"))
                case "rate":  # a finished file's is its average: dim
                    rate = short_rate(self.rates.rate(f, at))
                    cells.append(Text(rate, justify="right", style="dim" if f.finished else ""))
                case "eta":
                    left = self.rates.left(f, at)
                    cells.append(Text(short_duration(left), justify="right"))
                case "state":
                    cells.append(styled_state(self.label(f)))
                case "where":
                    cells.append(display_where(f.where, width))
        return tuple(cells)

    def show(self, files: tuple[FileProgress, ...], at: float) -> None:
        """Bring the table in line with a snapshot's files (taken at `at`)."""
        rows, in_flight = ordered_rows(files)
        self.rates.update(rows[:in_flight], at)
        keys = [f"{f.upload_id or f.path}\0{f.started}" for f in rows]
        layout = self._layout(rows)
        cells = {key: self._cells_for(f, layout, at) for key, f in zip(keys, rows, strict=False)}
        selected = self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None
        if layout != self.layout_now:
            self.clear(columns=True)
            for key, width in layout:
                self.add_column(LABELS.get(key, key) if width < FIXED_WIDTHS["bar"] else key, width=width, key=key)
            self._keys = []  # every row is added again below
        if keys == self._keys:
            for key in keys:
                old, new = self._cells[key], cells[key]
                for (column, _), before, after in zip(layout, old, new, strict=False):
                    if before != after:
                        self.update_cell(key, column, after)
        else:
            self.clear()
            for key in keys:
                self.add_row(*cells[key], key=key)
            if selected in cells:
                self.move_cursor(row=keys.index(selected), animate=False, scroll=False)
        # Files in flight never scroll out of view: pinned (at most half the rows, so the
        # latest outcomes show too); away from the keyboard the newest outcomes stay in view.
        pinned = min(in_flight, max(1, (self.size.height - 1) // 2))
        if pinned != self.fixed_rows:
            self.fixed_rows = pinned
        if not self.has_focus and self.scroll_y:
            self.scroll_to(y=0, animate=False)
        self.layout_now = layout
        self._keys = keys
        self.shown_files = rows
        self.in_flight = in_flight
        self._cells = cells
