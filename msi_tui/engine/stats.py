"""Counters and per-file progress shared by engine threads, read as plain snapshots.

Writers (delivery callbacks, consumer threads) take a lock for a few integer updates;
readers (the console's `check`, the app's 5 Hz refresh) call `snapshot()` and get frozen
data they can keep without holding anything.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

RECENT_FILES = 200  # finished files kept for display; in-progress ones are always kept
_Row = dict[str, Any]  # a FileProgress in the making: its fields by name


@dataclass(frozen=True)
class FileProgress:
    """One file's progress as a front end shows it."""

    path: str
    size: int
    chunks_done: int
    chunks_total: int
    state: str  # upload: queued, sending, done, verified, failed...; reconstruct: receiving, verified, ...
    started: float
    finished: float | None = None
    source: str = ""  # the uploader's source name
    where: str = ""  # upload: where a receipt says it is (host:folder/path), or why it failed there
    upload_id: str = ""
    partition: int = -1  # the topic partition its records go to (-1: not known yet)
    history: tuple[tuple[str, float], ...] = ()  # (state, time.time()) each time the state changed
    digest: str = ""  # the whole file's, as the uploader sent it ("XXH3-128 <hex>"), once known


@dataclass(frozen=True)
class UploadSnapshot:
    """The upload side at one instant."""

    state: str  # starting, watching, paused, draining, stopped
    files_queued: int
    files_in_progress: int
    files_done: int
    files_failed: int
    chunks_produced: int
    chunks_delivered: int
    bytes_delivered: int
    pending_deliveries: int
    connection: str = "unknown"  # connecting, connected, unreachable
    files: tuple[FileProgress, ...] = field(default_factory=tuple)
    taken_at: float = 0.0
    source: str = ""
    files_verified: int = 0  # a reconstructor's receipt says published and verified
    files_failed_there: int = 0  # a receipt says quarantined, refused or abandoned
    awaiting_receipt: int = 0  # delivered, no receipt yet
    receipts: str = "following"  # or why the uploader cannot follow receipts


@dataclass(frozen=True)
class ReconstructSnapshot:
    """The reconstruct side at one instant."""

    state: str  # starting, consuming, stopping, stopped
    messages_read: int
    files_completed: int
    files_in_progress: int
    files_quarantined: int
    records_rejected: int
    bytes_written: int
    threads: int  # rebuilding threads
    lag: int | None
    connection: str = "unknown"  # connecting, connected, unreachable
    files: tuple[FileProgress, ...] = field(default_factory=tuple)
    taken_at: float = 0.0
    files_failed: int = 0  # refused or abandoned uploads


class FileTable:
    """Per-file progress keyed by an id, bounded to the files in progress plus recent ones."""

    def __init__(self) -> None:
        self._rows: OrderedDict[str, _Row] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()  # keys of finished rows, oldest first

    def put(self, key: str, **row: object) -> None:
        row = dict(row)
        if "state" in row:
            row["history"] = ((row["state"], time.time()),)
        self._rows[key] = row
        self._rows.move_to_end(key)
        self._finished.pop(key, None)
        self._note_finished(key, row)

    def update(self, key: str, **changes: object) -> None:
        row = self._rows.get(key)
        if row is not None:
            if "state" in changes and changes["state"] != row.get("state"):
                row["history"] = (*row.get("history", ()), (changes["state"], time.time()))
            row.update(changes)
            self._note_finished(key, changes)

    def bump(self, key: str, done: int = 1) -> None:
        row = self._rows.get(key)
        if row is not None:
            row["chunks_done"] += done

    def _note_finished(self, key: str, fields: _Row) -> None:
        if fields.get("finished") is None:
            return
        self._finished[key] = None
        if len(self._finished) > RECENT_FILES:
            del self._rows[self._finished.popitem(last=False)[0]]

    def frozen(self) -> tuple[FileProgress, ...]:
        return tuple(FileProgress(upload_id=key, **row) for key, row in self._rows.items())


class UploadStats:
    """Upload counters; every method is thread safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = "starting"
        self.files_queued = 0
        self.files_in_progress = 0
        self.files_done = 0
        self.files_failed = 0
        self.chunks_produced = 0
        self.chunks_delivered = 0
        self.bytes_delivered = 0
        self.connection = "connecting"
        self.table = FileTable()
        self.source = ""
        self.files_verified = 0
        self.files_failed_there = 0
        self.awaiting_receipt = 0
        self.receipts = "following"

    def snapshot(self, pending_deliveries: int = 0) -> UploadSnapshot:
        with self.lock:
            return UploadSnapshot(
                state=self.state,
                files_queued=self.files_queued,
                files_in_progress=self.files_in_progress,
                files_done=self.files_done,
                files_failed=self.files_failed,
                chunks_produced=self.chunks_produced,
                chunks_delivered=self.chunks_delivered,
                bytes_delivered=self.bytes_delivered,
                pending_deliveries=pending_deliveries,
                connection=self.connection,
                files=self.table.frozen(),
                taken_at=time.time(),
                source=self.source,
                files_verified=self.files_verified,
                files_failed_there=self.files_failed_there,
                awaiting_receipt=self.awaiting_receipt,
                receipts=self.receipts,
            )


class ReconstructStats:
    """Reconstruct counters; every method is thread safe."""

    def __init__(self, threads: int) -> None:
        self.lock = threading.Lock()
        self.state = "starting"
        self.threads = threads
        self.messages_read = 0
        self.files_completed = 0
        self.files_quarantined = 0
        self.files_failed = 0  # refused or abandoned: nothing of them was kept
        self.records_rejected = 0
        self.bytes_written = 0
        self.lag: int | None = None
        self.connection = "connecting"
        self.table = FileTable()

    def snapshot(self, files_in_progress: int = 0) -> ReconstructSnapshot:
        with self.lock:
            return ReconstructSnapshot(
                state=self.state,
                messages_read=self.messages_read,
                files_completed=self.files_completed,
                files_in_progress=files_in_progress,
                files_quarantined=self.files_quarantined,
                files_failed=self.files_failed,
                records_rejected=self.records_rejected,
                bytes_written=self.bytes_written,
                threads=self.threads,
                lag=self.lag,
                connection=self.connection,
                files=self.table.frozen(),
                taken_at=time.time(),
            )
