"""After delivery: each file followed to its destination by the reconstructors' receipts.

A delivered file is only on the topic. The uploader follows the receipts topic
(msi_tui.engine.receipts) for its own uploads and tells, per file, whether a reconstructor
published and verified it (where: host, folder, name) or failed to (quarantined, refused,
abandoned). Files with no receipt long after delivery raise one warning: most often no
reconstructor is running. Only a verified file may be cleaned up at the source
(`--after-verified move DIR|delete`), and only the very version that was sent, once it has
been left alone for a while (a writer that writes in passes is not cut off).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from confluent_kafka.admin import AdminClient

from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.events import FileFailedThere, FileVerified, Notice, Sink
from msi_tui.engine.receipts import Receipt, ReceiptBook
from msi_tui.engine.registry import Registry, Sent
from msi_tui.engine.stats import UploadStats
from msi_tui.engine.wire import shown_name

AfterVerified = Literal["keep", "move", "delete"]
DEFAULT_RECEIPT_TIMEOUT_S = 300.0
CLEANUP_MIN_AGE_S = 60.0  # a file is cleaned up only once unchanged this long
LOOK_EVERY_S = 1.0


@dataclass(frozen=True)
class Cleanup:
    """What --after-verified asks: keep the source file, move it under `to`, or delete it."""

    action: AfterVerified = "keep"
    to: Path | None = None


class Followup:
    """The uploads awaiting a receipt, and what becomes of them; thread safe."""

    def __init__(self, folder: Path | None, registry: Registry | None, stats: UploadStats, sink: Sink,
                 cleanup: Cleanup, receipt_timeout_s: float) -> None:
        self.folder = folder
        self.registry = registry
        self.stats = stats
        self.sink = sink
        self.cleanup = cleanup
        self.receipt_timeout_s = receipt_timeout_s
        self._lock = threading.Lock()
        self._flying: set[str] = set()  # uploads being sent: a receipt may beat their delivery report
        self._early: dict[str, Receipt] = {}
        self._awaited: dict[str, Sent] = {}
        self._to_clean: list[Sent] = []
        self._overdue_told = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, config: ClusterConfig, data_topic: str, admin: AdminClient) -> ReceiptBook | None:
        """Follow the receipts topic of `data_topic`, in every group; the book, or None when
        the topic cannot be followed (then said, see start)."""
        book = ReceiptBook(config, data_topic, None, on_receipt=self.take)
        book.start(admin, write=False)
        self.start(book.unavailable)
        return book if book.active else None

    def start(self, unavailable: str | None) -> None:
        """Take over what earlier runs delivered and no receipt settled; start the thread
        that warns of missing receipts and cleans up. `unavailable`: why there are no receipts."""
        if unavailable is not None:
            self.stats.receipts = f"unavailable ({unavailable})"
            extra = "; --after-verified does nothing without them" if self.cleanup.action != "keep" else ""
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"cannot follow receipts: {unavailable}. Files are delivered but not confirmed at the destination"
                + extra)))
            return
        if self.registry is not None and self.folder is not None:
            for sent in self.registry.awaiting_receipt():
                self._awaited[sent.upload_id] = sent
        with self.stats.lock:
            self.stats.awaiting_receipt = len(self._awaited)
        self._thread = threading.Thread(target=self._run, name="msi-followup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # --- from the upload threads and the delivery thread ---------------------------------

    def begin(self, upload_id: str) -> None:
        with self._lock:
            self._flying.add(upload_id)

    def forget(self, upload_id: str) -> None:
        """The upload ended otherwise than delivered: no receipt will settle anything."""
        with self._lock:
            self._flying.discard(upload_id)
            self._early.pop(upload_id, None)

    def expect(self, sent: Sent, watched: bool) -> None:
        """The upload was delivered: its receipt is awaited (files given by hand are not
        followed: their command has ended by then)."""
        with self._lock:
            self._flying.discard(sent.upload_id)
            early = self._early.pop(sent.upload_id, None)
            if not watched or self._thread is None:
                return
            self._awaited[sent.upload_id] = sent
        with self.stats.lock:
            self.stats.awaiting_receipt += 1
        if early is not None:
            self.take(early)

    # --- from the receipts follower ------------------------------------------------------

    def take(self, receipt: Receipt) -> None:
        """A receipt was read: settle the upload it names, if it is one of ours."""
        uid = receipt.upload_id
        with self._lock:
            sent = self._awaited.pop(uid, None)
            if sent is None:
                if uid in self._flying:
                    self._early[uid] = receipt
                return
        if receipt.outcome == "withdrawn":  # (not for a delivered upload: it stays awaited)
            with self._lock:
                self._awaited[uid] = sent
            return
        shown = shown_name(sent.relpath)
        if receipt.outcome != "published":
            reason = shown_name(receipt.reason)
            with self.stats.lock:
                self.stats.awaiting_receipt -= 1
                self.stats.files_failed_there += 1
                self.stats.table.update(uid, state=f"{receipt.outcome} there", where=reason)
            if self.registry is not None:
                self.registry.finish(uid, "failed-there", reason)
            self.sink(FileFailedThere(path=shown, upload_id=uid, host=receipt.host, outcome=receipt.outcome,
                                      reason=reason, at=time.time()))
            return
        # (shown: SQLite text holds no lone surrogate)
        where = shown_name(f"{receipt.host}:{os.path.join(receipt.output, receipt.saved_as)}")
        with self.stats.lock:
            self.stats.awaiting_receipt -= 1
            self.stats.files_verified += 1
            self.stats.table.update(uid, state="verified", where=where)
        if self.registry is not None:
            self.registry.finish(uid, "verified", where)
        cleanup = ""
        if self.cleanup.action != "keep":
            with self._lock:
                self._to_clean.append(sent)
            cleanup = f"{'moved' if self.cleanup.action == 'move' else 'deleted'} at the source once left alone " \
                      f"for {CLEANUP_MIN_AGE_S:.0f} s"
        self.sink(FileVerified(path=shown, upload_id=uid, host=receipt.host, output=shown_name(receipt.output),
                               saved_as=shown_name(receipt.saved_as), cleanup=cleanup, at=time.time()))

    # --- its own thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(LOOK_EVERY_S):
            try:
                self._warn_if_overdue()
                self._clean_due()
            except Exception as exc:  # never silently: say it, and go on with the next look
                self.sink(Notice(level="error", message=f"following receipts: {exc!r}", at=time.time()))

    def _warn_if_overdue(self) -> None:
        cutoff = time.time() - self.receipt_timeout_s
        with self._lock:
            overdue = sum(1 for s in self._awaited.values() if s.delivered < cutoff)
        if overdue and not self._overdue_told:
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"{overdue} file{'' if overdue == 1 else 's'} delivered over {self.receipt_timeout_s:g} s ago "
                "without a receipt from any reconstructor: is one running on this topic?")))
        self._overdue_told = bool(overdue)

    def _clean_due(self) -> None:
        with self._lock:
            todo, self._to_clean = self._to_clean, []
        later = [sent for sent in todo if not self._clean(sent)]
        with self._lock:
            self._to_clean.extend(later)

    def _clean(self, sent: Sent) -> bool:
        """Move or delete a verified file at the source; False: not yet (changed too recently)."""
        assert self.folder is not None
        path = self.folder / sent.relpath
        shown = shown_name(sent.relpath)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return True  # gone already
        if (st.st_size, st.st_mtime_ns) != (sent.size, sent.mtime_ns):
            self.sink(Notice(level="info", at=time.time(), message=(
                f"{shown} changed since the verified version was sent: kept at the source")))
            return True
        if time.time() - st.st_mtime < CLEANUP_MIN_AGE_S:
            return False
        try:
            if self.cleanup.action == "delete":
                path.unlink()
                done = "deleted at the source"
            else:
                assert self.cleanup.to is not None
                target = self.cleanup.to / sent.relpath
                if target.exists():
                    raise FileExistsError(f"{shown_name(str(target))} exists")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
                done = f"moved to {shown_name(str(target))}"
        except OSError as exc:
            self.sink(Notice(level="error", at=time.time(), message=(
                f"{shown} is verified but stays at the source: {exc.strerror or exc}")))
            return True
        self.sink(Notice(level="info", message=f"{shown}: verified, {done}", at=time.time()))
        return True
