"""The Upload pane: what the watched folder is sending, how fast, and what arrived verified."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult

from msi_tui.engine.stats import UploadSnapshot
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.formatting import count, counts_line, summary_line
from msi_tui.tui.pane import Line, ServicePane

# Delivered to Kafka is not yet arrived: "done" says only "sent" until a receipt says more
# ("verified", or "<outcome> there").
STATE_LABELS = {"done": "sent"}
STATE_WIDTH = len("quarantined there")


def upload_summary(snap: UploadSnapshot) -> Text:
    """State and file counts on one line: `watching  queued 3 · sending 2 · sent 41 · failed 0`."""
    return summary_line(snap.state, [
        ("queued", snap.files_queued, ""),
        ("sending", snap.files_in_progress, ""),
        ("sent", snap.files_done, ""),
        ("failed", snap.files_failed, "bold red" if snap.files_failed else ""),
    ])


def receipts_summary(snap: UploadSnapshot) -> Text:
    """What the destination said of the sent files: `receipts  verified 38 · awaiting 2 ·
    failed there 1`, or why nobody can say (then "sent" is all the pane knows)."""
    if snap.receipts != "following":
        return Text.assemble(("receipts ", "dim"), (snap.receipts, "yellow"))
    return Text.assemble(("receipts  ", "dim"), counts_line([
        ("verified", snap.files_verified, "green" if snap.files_verified else ""),
        ("awaiting", snap.awaiting_receipt, ""),
        ("failed there", snap.files_failed_there, "bold red" if snap.files_failed_there else ""),
    ]))


class UploadPane(ServicePane):
    """Watched folder, source, state, counts, receipts, throughput with sparkline, files."""

    DEFAULT_CSS = """
    UploadPane.-error #upload-receipts, UploadPane.-absent #upload-receipts { display: none; }
    """

    title = "Upload"
    _title = "Upload"

    def compose(self) -> ComposeResult:
        yield from self.compose_error_banner()
        yield Line("", id="upload-folder")
        yield Line(Text("starting", style="yellow"), id="upload-summary", classes="summary", fixed=True)
        yield Line("", id="upload-receipts", fixed=True)
        yield from self.compose_rate_row()
        yield FilesTable(STATE_LABELS, state_width=STATE_WIDTH, with_where=True, id="upload-files")

    def show_folder(self, folder: Path | None) -> None:
        where = str(folder.absolute()) if folder is not None else "(no folder: files added with `upload PATH`)"
        self.query_one("#upload-folder", Line).set(Text.assemble(("folder ", "dim"), where))

    def show_absent(self) -> None:
        """This session has no uploader; say how to get one instead of showing zeros."""
        self.query_one("#upload-folder", Line).set(
            Text("not uploading in this session (start with: msi-tui upload DIR)", style="dim")
        )
        self.add_class("-absent")

    def show(self, snap: UploadSnapshot) -> None:
        """Redraw from one snapshot (called by the app's refresh timer)."""
        # The name the files travel under, which the far side files them by (--by-source).
        title = f"{self.title} as {snap.source}" if snap.source else self.title
        if title != self._title:
            self._title = title
            self.border_title = Text(title)  # Text: a source is never read as markup
        self.query_one("#upload-summary", Line).set(upload_summary(snap))
        self.query_one("#upload-receipts", Line).set(receipts_summary(snap))
        pending = Text.assemble(("pending ", "dim"), (count(snap.pending_deliveries), "bold"))
        self.show_rate(snap.bytes_delivered, snap.taken_at, pending)
        self.query_one(FilesTable).show(snap.files, snap.taken_at)
        self.show_detail()
