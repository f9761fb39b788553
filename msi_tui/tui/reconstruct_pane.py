"""The Reconstruct pane: what the consumer group is rebuilding, verifying and publishing."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult

from msi_tui.engine.stats import ReconstructSnapshot
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.formatting import count, summary_line
from msi_tui.tui.pane import Line, ServicePane

# A reconstructed file is only "done" after its digest matched: say so in the table.
STATE_LABELS = {"done": "verified"}


def reconstruct_summary(snap: ReconstructSnapshot) -> Text:
    """State and counts on one line: `consuming  read 5,120 · done 39 · receiving 2 · ...`."""
    return summary_line(snap.state, [
        ("read", snap.messages_read, ""),
        ("done", snap.files_completed, "green" if snap.files_completed else ""),
        ("receiving", snap.files_in_progress, ""),
        ("quarantined", snap.files_quarantined, "bold red" if snap.files_quarantined else ""),
        ("rejected", snap.records_rejected, "yellow" if snap.records_rejected else ""),
    ])


class ReconstructPane(ServicePane):
    """Output folder, group, rebuilding threads, counts, throughput with sparkline, lag, files
    with their sources."""

    title = "Reconstruct"

    def compose(self) -> ComposeResult:
        yield from self.compose_error_banner()
        yield Line("", id="reconstruct-where")
        yield Line(Text("starting", style="yellow"), id="reconstruct-summary", classes="summary", fixed=True)
        yield from self.compose_rate_row()
        # Which instrument sent each file: two sources may send the same relative path.
        yield FilesTable(STATE_LABELS, with_source=True, id="reconstruct-files")

    def show_where(self, output_dir: Path, group_id: str, threads: int | None = None) -> None:
        text = Text.assemble(("output ", "dim"), str(output_dir.absolute()), ("  group ", "dim"), group_id)
        if threads is not None:
            text.append_text(Text.assemble(("  threads ", "dim"), str(threads)))
        self.query_one("#reconstruct-where", Line).set(text)

    def show_absent(self) -> None:
        """This session has no reconstructor; say how to get one instead of showing zeros."""
        self.query_one("#reconstruct-where", Line).set(
            Text("not reconstructing in this session (start with: msi-tui reconstruct DIR)", style="dim")
        )
        self.add_class("-absent")

    def show(self, snap: ReconstructSnapshot, output_dir: Path, group_id: str) -> None:
        """Redraw from one snapshot (called by the app's refresh timer)."""
        self.show_where(output_dir, group_id, snap.threads)
        self.query_one("#reconstruct-summary", Line).set(reconstruct_summary(snap))
        lag = Text.assemble(("lag ", "dim"), (count(snap.lag), "bold"))
        self.show_rate(snap.bytes_written, snap.taken_at, lag)
        self.query_one(FilesTable).show(snap.files, snap.taken_at)
        self.show_detail()
