"""The app's view of each service's life: absent, starting, running, failed or stopped.

Only the app's own thread reads or writes a slot; the start worker reports back through
Textual's worker-state messages, never by touching a slot itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from msi_tui.engine.service import ReconstructService, UploadService

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

