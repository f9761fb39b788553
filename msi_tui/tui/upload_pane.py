"""The Upload pane: what the watched folder is sending and how fast."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult

from msi_tui.engine.stats import UploadSnapshot
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.formatting import count, summary_line
from msi_tui.tui.pane import Line, ServicePane


def upload_summary(snap: UploadSnapshot) -> Text:
    """State and file counts on one line: `watching  queued 3 · sending 2 · done 41 · failed 0`."""
    return summary_line(snap.state, [
        ("queued", snap.files_queued, ""),
        ("sending", snap.files_in_progress, ""),
        ("done", snap.files_done, "green" if snap.files_done else ""),
        ("failed", snap.files_failed, "bold red" if snap.files_failed else ""),
    ])


class UploadPane(ServicePane):
    """Watched folder, state, counts, throughput with sparkline, pending deliveries, files."""

    title = "Upload"

    def compose(self) -> ComposeResult:
        yield from self.compose_error_banner()
        yield Line("", id="upload-folder")
        yield Line(Text("starting", style="yellow"), id="upload-summary", classes="summary", fixed=True)
        yield from self.compose_rate_row()
        yield FilesTable(id="upload-files")

    def show_folder(self, folder: Path | None) -> None:
        where = str(folder) if folder is not None else "(no folder: files added with `upload PATH`)"
        self.query_one("#upload-folder", Line).set(Text.assemble(("folder ", "dim"), where))

    def show_absent(self) -> None:
        """This session has no uploader; say how to get one instead of showing zeros."""
        self.query_one("#upload-folder", Line).set(
            Text("not uploading in this session (start with: msi-tui upload DIR)", style="dim")
        )
        self.add_class("-absent")

    def show(self, snap: UploadSnapshot) -> None:
        """Redraw from one snapshot (called by the app's refresh timer)."""
        self.query_one("#upload-summary", Line).set(upload_summary(snap))
        pending = Text.assemble(("pending ", "dim"), (count(snap.pending_deliveries), "bold"))
        self.show_rate(snap.bytes_delivered, snap.taken_at, pending)
        self.query_one(FilesTable).show(snap.files)
