"""What the rebuilding threads share with each other and with the consumer thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from msi_tui.engine import wire
from msi_tui.engine.assembly import Assembly
from msi_tui.engine.events import Sink
from msi_tui.engine.journal import Journal
from msi_tui.engine.ledger import Ledger
from msi_tui.engine.output import OutputFolder
from msi_tui.engine.receipts import ReceiptBook
from msi_tui.engine.stats import ReconstructStats

UNNAMED_SOURCE = "unnamed-source"  # --by-source: the folder of uploads that name no source


@dataclass
class RebuildContext:
    """What the rebuilding threads share with each other and with the consumer thread."""

    output: OutputFolder
    output_dir: Path
    group_id: str
    direct_writes: bool
    ledger: Ledger
    receipts: ReceiptBook
    journal: Journal | None
    stats: ReconstructStats
    sink: Sink
    stop: threading.Event
    paused: threading.Event
    by_source: bool = False  # files go to OUT/<source>/<path>
    lock: threading.Lock = field(default_factory=threading.Lock)
    assemblies: dict[str, Assembly] = field(default_factory=dict)  # uploads being rebuilt, by id
    owned: dict[int, int] = field(default_factory=dict)  # partition -> generation (a revoke ends one)
    blocked_by: str | None = None  # why the output refuses writes, while it does

    def owns(self, partition: int, generation: int) -> bool:
        return self.owned.get(partition) == generation

    def hand_over(self, a: Assembly) -> None:
        """Forget an upload whose partition went to another member (it stays open for its
        next owner): its staged file goes, once the writes handed over are done."""
        a.abandon()
        self.output.discard_staged(a.fd, a.staged)
        with self.stats.lock:
            self.stats.table.update(a.meta.upload_id, state="handed over", finished=time.time())

    def destination(self, meta: wire.RecordMeta) -> str:
        """Where an upload's file goes, relative to the output folder."""
        return f"{meta.source or UNNAMED_SOURCE}/{meta.path}" if self.by_source else meta.path

    def finished(self, upload_id: str) -> bool:
        """Ended already (here, by an earlier owner of the partition, or in an earlier run)."""
        return self.receipts.has(upload_id) or bool(self.journal and self.journal.seen(upload_id))
