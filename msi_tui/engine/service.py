"""What a front end (console or app) may ask of a running engine service."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from msi_tui.engine.stats import ReconstructSnapshot, UploadSnapshot


class Service(Protocol):
    """Common life cycle of the uploader and the reconstructor.

    `start()` raises `OperatorError` for anything the operator must fix (broker unreachable,
    missing folder); afterwards problems arrive as events. Every other method returns at
    once and is safe to call from any thread.
    """

    def start(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def request_stop(self) -> None:
        """Graceful stop: the uploader drains every enqueued chunk, the reconstructor commits."""
    def force_stop(self) -> None:
        """Stop now, giving up on undelivered chunks (a second quit)."""
    def wait_stopped(self, timeout: float) -> bool: ...
    @property
    def stopped(self) -> bool: ...


class UploadService(Service, Protocol):
    folder: Path | None

    def snapshot(self) -> UploadSnapshot: ...
    def enqueue_file(self, path: Path) -> None:
        """Send one file now (the command bar's `upload PATH`)."""


class ReconstructService(Service, Protocol):
    output_dir: Path
    group_id: str

    def snapshot(self) -> ReconstructSnapshot: ...
