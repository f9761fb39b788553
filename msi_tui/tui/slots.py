"""The app's view of each service's life: absent, starting, running, failed or stopped.

Only the app's own thread reads or writes a slot; the start worker reports back through
Textual's worker-state messages, never by touching a slot itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from msi_tui.engine.service import ReconstructService, UploadService
from msi_tui.engine.stats import ReconstructSnapshot, UploadSnapshot
from msi_tui.tui.formatting import count

SlotStatus = Literal["absent", "starting", "running", "failed"]


@dataclass
class ServiceSlot:
    """One service as the app tracks it."""

    name: Literal["upload", "reconstruct"]
    service: UploadService | ReconstructService | None
    status: SlotStatus = "absent"
    error: str | None = None
    stop_requested: bool = False
    """Quit came while start() was still running: stop it as soon as start returns."""

    @property
    def active(self) -> bool:
        """Started or starting, and not yet stopped: quit has to wait for it."""
        if self.service is None or self.status in ("absent", "failed"):
            return False
        return self.status == "starting" or not self.service.stopped


def check_upload(snap: UploadSnapshot) -> list[str]:
    """The upload half of `check`: the seed's counts first, short lines for an 80-column log."""
    return [
        f"upload: {snap.state} · enqueued {count(snap.files_queued)} · in progress "
        f"{count(snap.files_in_progress)} · done {count(snap.files_done)} · failed "
        f"{count(snap.files_failed)}",
        f"upload: pending deliveries {count(snap.pending_deliveries)} · chunks "
        f"{count(snap.chunks_delivered)}/{count(snap.chunks_produced)} · {snap.connection}",
    ]


def check_reconstruct(snap: ReconstructSnapshot) -> list[str]:
    """The reconstruct half of `check`: the seed's counts first, then lag and health."""
    return [
        f"reconstruct: {snap.state} · read {count(snap.messages_read)} · completed "
        f"{count(snap.files_completed)} · in progress {count(snap.files_in_progress)}",
        f"reconstruct: lag {count(snap.lag)} · quarantined {count(snap.files_quarantined)} · "
        f"rejected {count(snap.records_rejected)} · {snap.connection}",
    ]
