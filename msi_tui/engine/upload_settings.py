"""What the upload commands' options set, checked (defaults are the seed programs')."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from msi_tui.engine import wire
from msi_tui.engine.digest import DEFAULT as DEFAULT_DIGEST
from msi_tui.engine.digest import Algorithm
from msi_tui.engine.followup import DEFAULT_RECEIPT_TIMEOUT_S, Cleanup
from msi_tui.engine.watch import DEFAULT_SETTLE_S, FileFilter
from msi_tui.errors import OperatorError


@dataclass(frozen=True)
class UploadSettings:
    """What the upload commands' options set (defaults are the seed programs')."""

    topic: str = "lecroy_files"
    n_threads: int = 5
    chunk_size: int = 16384
    queue_max_size: int = 3000
    partitions: int = 5
    folder: Path | None = None
    file_filter: FileFilter = field(default_factory=FileFilter)
    use_polling: bool = False
    quiet_seconds: float = 3.0
    settle_seconds: float = DEFAULT_SETTLE_S
    use_registry: bool = True
    digest: Algorithm = DEFAULT_DIGEST
    source: str = field(default_factory=socket.gethostname)
    cleanup: Cleanup = field(default_factory=Cleanup)
    receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S

    def __post_init__(self) -> None:
        try:
            wire.check_source(self.source)
        except wire.WireError as exc:
            raise OperatorError(f"--source {self.source!r} cannot name a source: {exc}") from None
        if self.settle_seconds < 0 or self.receipt_timeout_s <= 0:
            raise OperatorError("--settle-seconds must be 0 or more and --receipt-timeout more than 0")
        to = self.cleanup.to
        if to is not None and self.folder is not None and to.resolve().is_relative_to(self.folder.resolve()):
            raise OperatorError(f"--after-verified move {to}: that folder is inside the watched one, "
                                "so moved files would be sent again")
        if not wire.is_power_of_two(self.chunk_size):
            raise OperatorError(f"chunk size must be a nonzero power of two (got {self.chunk_size}); try 16384")
        if self.n_threads < 1:
            raise OperatorError(f"the number of threads must be at least 1 (got {self.n_threads})")
        if self.queue_max_size < 1:
            raise OperatorError(f"the queue size must be at least 1 message (got {self.queue_max_size})")
