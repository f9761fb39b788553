"""What the app is given to run: cluster identity, the services, and a few knobs for tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from msi_tui.engine.service import ReconstructService, UploadService
from msi_tui.tui.event_buffer import EventBuffer

PaneName = Literal["upload", "reconstruct"]


@dataclass
class AppContext:
    """Everything `MsiTuiApp` needs; the CLI builds one, tests build one with fakes."""

    cluster_name: str
    """The cluster's name as the operator knows it (shown in the header)."""
    bootstrap: str
    """Bootstrap servers, e.g. `localhost:9092` (shown in the header)."""
    topic: str
    """The Kafka topic the files travel through."""
    uploader: UploadService | None
    """The upload service, or None when this app only reconstructs."""
    reconstructor: ReconstructService | None
    """The reconstruct service, or None when this app only uploads."""
    events: EventBuffer
    """The sink the services were built with; the app drains it on its refresh timer."""
    initial_pane: PaneName | None = None
    """The pane shown first (and focused) when the screen is too small for both."""
    log_path: Path | None = None
    """A file that receives every log line (the full history); None keeps only the panel."""
    clock: Callable[[], float] = time.time
    """Wall clock for the app's own log lines; tests pass a fixed one for stable snapshots."""
    cursor_blink: bool = True
    """Blink the command bar's cursor; tests turn it off so snapshots do not flicker."""
    refresh_hz: float = 5.0
    """How often the panes read the services' snapshots (UI cost does not grow with traffic)."""
    log_lines: int = 1000
    """How many lines the log panel keeps on screen; the log file keeps everything."""
