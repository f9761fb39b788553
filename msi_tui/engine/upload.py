"""Files to chunks to one shared Producer, with every delivery accounted for.

Each of `n_threads` upload threads takes one file at a time and reads it once, in order:
every chunk is hashed and handed to librdkafka as it is read, so the whole-file digest
comes for free and goes out in the closing `end` record. librdkafka's own threads do the
network I/O for all files at once; `produce()` only copies into its queue, whose bound (the
seed's queue_max_size) is the backpressure: a full queue raises BufferError, and we serve
delivery reports and retry, never drop.

Every upload ends exactly once (`Uploader._finish`): done, or withdrawn with an `abort`
record, which tells reconstructors to drop its staged file and let go of its partition's
offset. The registry writes each upload down before its first chunk, with the partition
chosen for it, and again before its `end` record: one that could not be withdrawn (the
uploader was killed, or the broker was out of reach) is withdrawn at the next start, unless
its `end` record is found on the topic (msi_tui.engine.landed): then it was sent, once.
Delivered files are then followed to their destination (msi_tui.engine.followup).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Literal

from confluent_kafka import KafkaError, KafkaException, Producer

from msi_tui.engine import wire
from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.digest import DEFAULT as DEFAULT_DIGEST
from msi_tui.engine.digest import Algorithm, new_hasher
from msi_tui.engine.events import (
    FileChangedDuringUpload,
    FileQueued,
    FileUploaded,
    FileUploadFailed,
    FileUploadStarted,
    Notice,
    Sink,
)
from msi_tui.engine.followup import DEFAULT_RECEIPT_TIMEOUT_S, Cleanup, Followup
from msi_tui.engine.kafka_clients import check_reachable, describe_kafka_error, ensure_topic, producer_settings
from msi_tui.engine.landed import ended_on_topic
from msi_tui.engine.receipts import ReceiptBook
from msi_tui.engine.registry import FOLDER_SIZE, Registry, Sent, Unfinished
from msi_tui.engine.stats import UploadSnapshot, UploadStats
from msi_tui.engine.watch import DEFAULT_SETTLE_S, FileFilter, FolderWatcher
from msi_tui.engine.wire import shown_name
from msi_tui.errors import OperatorError
from msi_tui.paths import state_dir


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


REPORT_EVERY = 16  # chunks per delivery report (see _Delivery)
PRODUCED_REPORT_EVERY = 64  # chunks between updates of the shared produced-chunks counter
READ_BLOCK = 1 << 20  # bytes read and hashed at a time; chunks are produced as slices of it ...
READ_EACH_CHUNK_FROM = 64 << 10  # ... unless they are this large: a slice is a copy (produce()
# takes no memoryview), and one read per chunk saved 10 % of the CPU at 512 KiB (none at 16 KiB).
MANUAL_RETRIES = 3  # a file given by hand that keeps changing is retried this often
ABORT_GRACE_S = 2.0  # a forced stop still waits this long for its abort records to be acknowledged
FATAL_CAUSE_WAIT_S = 5.0
STOPPED = "stopped before it was completely sent"
DELETED = "deleted or moved away while it was being sent"
# A file held mid-way by a pause longer than this is withdrawn and sent again from its start
# on resume: a reconstructor ends an upload whose records stop for --abandon-after (600 s
# by default) while its partition moves on, and would then skip the rest of it.
HELD_MID_FILE_S = 120.0
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
LOG = logging.getLogger(__name__)

# How an upload ended: every record acknowledged, or withdrawn because it failed, the
# uploader stopped, the file changed or a pause held it too long (both: it is sent again
# under a new id).
Outcome = Literal["done", "failed", "stopped", "changed", "held"]


@dataclass(frozen=True)
class _Job:
    path: Path
    relpath: str
    from_watch: bool
    attempt: int = 1
    folder_mtime_ns: int | None = None  # a folder (its dir record), not a file

    @property
    def shown(self) -> str:
        return shown_name(self.relpath) + ("/" if self.folder_mtime_ns is not None else "")


class _Delivery:
    """Counts one upload's acknowledgements; runs in the thread serving delivery reports.

    Only every REPORT_EVERY-th chunk, the last chunk and the closing record ask for a
    delivery report: the producer is idempotent with the gapless guarantee, so records of
    one upload (one key, one partition) are acknowledged in order and none can be lost
    while a later one succeeds. An acknowledged chunk i therefore vouches for chunks 0..i,
    and the closing record's for the whole file: one Python callback per 16 chunks instead
    of one per chunk.
    """

    __slots__ = ("uploader", "job", "upload_id", "size", "mtime_ns", "chunks", "chunk_size", "common", "acked",
                 "outcome", "producing", "started", "partition")

    def __init__(self, uploader: "Uploader", job: _Job, upload_id: str, size: int, mtime_ns: int, chunks: int,
                 common: wire.Headers, partition: int) -> None:
        self.uploader, self.job, self.upload_id, self.partition = uploader, job, upload_id, partition
        self.size, self.mtime_ns, self.chunks = size, mtime_ns, chunks
        self.chunk_size = uploader.settings.chunk_size
        self.common = common
        self.acked = 0  # chunks 0..acked-1 are acknowledged
        self.outcome: Outcome | None = None  # set once, by Uploader._finish
        # The upload thread may still produce records of it: its abort must wait until not.
        self.producing = True
        self.started = time.monotonic()

    def reporter(self, index: int) -> Callable[[KafkaError | None, object], None] | None:
        """The delivery callback for chunk `index`, or None when a later one vouches for it."""
        if index % REPORT_EVERY != REPORT_EVERY - 1 and index != self.chunks - 1:
            return None
        return lambda err, _msg: self.chunks_acked(err, index + 1)

    def chunks_acked(self, err: KafkaError | None, through: int) -> None:
        if err is not None:
            self.uploader._delivery_failed(self, err)
            return
        stats = self.uploader.stats
        with stats.lock:
            newly = through - self.acked
            if newly <= 0:
                return
            stats.chunks_delivered += newly
            stats.bytes_delivered += min(through * self.chunk_size, self.size) - min(self.acked * self.chunk_size, self.size)
            stats.table.bump(self.upload_id, newly)
            self.acked = through

    def closing_acked(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.uploader._delivery_failed(self, err)
        else:
            self.chunks_acked(None, self.chunks)
            self.uploader._finish(self, "done")


def refusal(relpath: str) -> str | None:
    """Why a reconstructor would refuse a file sent under `relpath`, or None. Asked before
    anything of it is sent: the far end refuses such an upload, and the file would be
    reported uploaded here and be lost there. The rule is the reconstructor's own."""
    try:
        wire.check_relative_path(wire.path_bytes(relpath))
    except UnicodeEncodeError:  # (a surrogate no file name decodes to)
        return "its name cannot be sent; rename it to send it"
    except wire.WireError as exc:
        return f"a reconstructor would refuse its name ({exc}); rename it to send it"
    return None


def _fatal(exc: BaseException | None) -> KafkaException | None:
    """The fatal producer error `exc` is or was caused by: a delivery report that poll()
    serves while such an error is pending fails with a SystemError caused by it."""
    while exc is not None:
        err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        if isinstance(err, KafkaError) and (err.fatal() or err.code() == KafkaError._FATAL):
            return exc  # type: ignore[return-value]
        exc = exc.__cause__ or exc.__context__
    return None


class Uploader:
    """The upload service: a watched folder (optional), upload threads, one Producer."""

    def __init__(self, config: ClusterConfig, settings: UploadSettings, sink: Sink) -> None:
        self.config = config
        self.settings = settings
        self.sink = sink
        self.folder = settings.folder
        self.stats = UploadStats()
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._stop_new = threading.Event()  # no new chunks: quit was asked
        self._force = threading.Event()  # give up on undelivered chunks
        self._stopped = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._threads: list[threading.Thread] = []
        self._producer: Producer | None = None
        self._watcher: FolderWatcher | None = None
        self._registry: Registry | None = None
        self._receipts: ReceiptBook | None = None
        self._followup: Followup | None = None
        self._partitions = 1
        self._outage_reported = False
        self._open: set[_Delivery] = set()  # uploads begun and not ended (under stats.lock)
        # Abort records due, as (upload id, headers, partition): the delivery thread produces
        # them, as it may wait for room in librdkafka's queue, which a delivery report cannot.
        self._aborts: queue.SimpleQueue[tuple[str, wire.Headers, int]] = queue.SimpleQueue()
        self._aborts_unacked = 0  # (under stats.lock)
        self._failure: str | None = None  # why the producer failed for good, once it has
        self._failed = threading.Event()  # ... and that it has
        self._died: str | None = None  # which thread of ours ended unexpectedly, and why

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Check the broker and topic, then start the threads. Raises OperatorError."""
        if self.folder is not None and not self.folder.is_dir():
            raise OperatorError(f"folder to watch does not exist: {self.folder}")
        conf = producer_settings(self.config, self.settings.chunk_size, self.settings.queue_max_size)
        conf["error_cb"] = self._on_client_error
        try:
            # Made first: it connects while the broker and the topic are checked, not after.
            # Its error callback only runs once the delivery thread polls it, after the check.
            self._producer = Producer(conf)
        except Exception as exc:  # a bad key in the operator's config file
            raise OperatorError(f"producer settings rejected: {describe_kafka_error(exc)}") from None
        try:
            admin = check_reachable(self.config)
            self._partitions = ensure_topic(admin, self.settings.topic, self.settings.partitions)
            self._registry, unfinished = self._open_registry()
        except BaseException:
            self._producer = None  # (destroyed with its connection attempts; nothing was queued)
            raise
        self.stats.connection = "connected"
        self.stats.source = self.settings.source
        self._settle_unfinished(unfinished)
        if self.folder is not None:  # (a file given by hand: its command ends at delivery)
            self._follow_receipts(admin)
        self._spawn(self._serve_deliveries, "msi-deliveries")
        for i in range(self.settings.n_threads):
            self._spawn(self._upload_loop, f"msi-upload-{i}")
        if self.folder is not None:
            # --resend only stops the registry from skipping files: every upload is still
            # written down, so that it can be withdrawn should this run not finish it.
            self._watcher = FolderWatcher(
                self.folder,
                self._on_ready,
                self.sink,
                file_filter=self.settings.file_filter,
                use_polling=self.settings.use_polling,
                quiet_seconds=self.settings.quiet_seconds,
                settle_seconds=self.settings.settle_seconds,
                is_known=self._sent_before if self.settings.use_registry else (lambda *_: False),
                on_folder=self._on_folder,
                on_unreadable=self._on_unreadable,
                on_crash=self._thread_died,
            )
            self._watcher.start()
        self.stats.state = "watching" if self.folder is not None else "sending"

    def _open_registry(self) -> tuple[Registry, list[Unfinished]]:
        """The registry, and the uploads to this destination that earlier runs left unfinished."""
        db = state_dir() / "uploads.sqlite3"
        try:
            registry = Registry(db, f"{self.config.bootstrap}/{self.settings.topic}", self.folder, self.sink)
            return registry, registry.take_over_unfinished()
        except (OSError, sqlite3.Error) as exc:
            raise OperatorError(f"cannot open the upload registry {db}: {exc}") from None

    def _settle_unfinished(self, unfinished: list[Unfinished]) -> None:
        """Settle the uploads an earlier run began and never finished. One whose `end`
        record is on the topic was sent: it is done, and not sent again. The others are
        withdrawn: reconstructors hold their staged files and their partitions' offsets
        until an abort record comes."""
        ending = [u for u in unfinished if u.state == "ending"]
        ended = ended_on_topic(self.config, self.settings.topic, ending) if ending else {}
        assert self._registry is not None
        withdrawn = 0
        for u in unfinished:
            if ended.get(u.upload_id) == "end":
                self._registry.finish(u.upload_id, "done")
                if u.folder:
                    self._registry.mark(u.relpath, u.size, u.mtime_ns, u.upload_id, u.chunk_size, "done", u.folder)
                continue
            withdrawn += 1
            # (the headers of its records: the source and time are not compared with them)
            headers = wire.file_headers(u.upload_id, u.relpath, u.size, u.chunk_size, u.digest,
                                        self.settings.source, u.mtime_ns)
            self._aborts.put((u.upload_id, wire.abort_headers(headers), u.partition))
        if withdrawn:
            self.sink(Notice(level="info", at=time.time(), message=(
                f"withdrawing {withdrawn} unfinished upload{'' if withdrawn == 1 else 's'} an earlier run left "
                "(an abort record each)")))
        if len(unfinished) > withdrawn:
            n = len(unfinished) - withdrawn
            self.sink(Notice(level="info", at=time.time(), message=(
                f"{n} upload{'' if n == 1 else 's'} an earlier run left unrecorded had reached the topic whole: "
                "not sent again")))

    def _follow_receipts(self, admin: object) -> None:
        """Follow the reconstructors' receipts of our uploads (see msi_tui.engine.followup)."""
        self._followup = Followup(self.folder, self._registry, self.stats, self.sink, self.settings.cleanup,
                                  self.settings.receipt_timeout_s)
        book = ReceiptBook(self.config, self.settings.topic, None, on_receipt=self._followup.take)
        book.start(admin, write=False)  # type: ignore[arg-type]
        self._receipts = book if book.active else None
        self._followup.start(book.unavailable)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # a thread gone silently would leave files unsent while all looks fine
                self._thread_died(name, exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _thread_died(self, name: str, exc: BaseException) -> None:
        """A thread of ours ended unexpectedly (a fault of ours): said once as an error, and
        the service stops, rather than going on without it."""
        LOG.error("thread %s died", name, exc_info=exc)
        with self.stats.lock:
            self._died = self._died or f"thread {name} died: {exc!r}"
        self.sink(Notice(level="error", message=f"thread {name} died ({exc!r}): the uploader stops", at=time.time()))
        self.request_stop()
        if name == "msi-deliveries":
            # Nothing serves delivery reports any more, so no stop could complete. Uploads
            # left open stay `sending` in the registry and are withdrawn at the next start.
            self.stats.state = "stopped"
            self._stopped.set()

    @property
    def died(self) -> str | None:
        """Which thread ended unexpectedly and why (the service then stopped), or None."""
        return self._died

    def enqueue_file(self, path: Path) -> None:
        """Send one file (its name is the relative path on the other side)."""
        path = Path(path)
        if not path.is_file():
            raise OperatorError(f"no such file: {path}")
        self._enqueue(_Job(path, path.name, from_watch=False), path.stat().st_size)

    def _on_ready(self, path: Path, relpath: str, size: int, _mtime_ns: int) -> None:
        self._enqueue(_Job(path, relpath, from_watch=True), size)

    def _on_folder(self, relpath: str, mtime_ns: int) -> None:
        """A folder of the watched tree: its dir record is sent once (it may stay empty)."""
        registry = self._registry
        if refusal(relpath) is None and registry is not None and registry.is_done(relpath, FOLDER_SIZE, 0):
            return
        self._enqueue(_Job(self.folder / relpath, relpath, from_watch=True, folder_mtime_ns=mtime_ns), 0)

    def _on_unreadable(self, relpath: str, why: str) -> None:
        """A folder of the watched tree cannot be listed: its files cannot be sent."""
        with self.stats.lock:
            self.stats.files_failed += 1
        self.sink(FileUploadFailed(path=shown_name(relpath) + "/", at=time.time(),
                                   reason=f"cannot read this folder ({why}): its files are not sent"))

    def _sent_before(self, relpath: str, size: int, mtime_ns: int) -> bool:
        """The registry has this version of a watched file as done. A refused name is never
        written there (SQLite cannot even look up one that is not UTF-8): _enqueue refuses it."""
        registry = self._registry
        return registry is not None and refusal(relpath) is None and registry.is_done(relpath, size, mtime_ns)

    def _enqueue(self, job: _Job, size: int) -> None:
        if self._stop_new.is_set():
            return
        # Once per version of a watched file: the watcher does not offer a version again.
        reason = refusal(job.relpath)
        if reason is not None:
            with self.stats.lock:
                self.stats.files_failed += 1
            self.sink(FileUploadFailed(path=job.shown, reason=reason, at=time.time()))
            return
        with self.stats.lock:
            self.stats.files_queued += 1
        self._jobs.put(job)
        if job.folder_mtime_ns is None:
            self.sink(FileQueued(path=job.shown, size=size, at=time.time()))

    def pause(self) -> None:
        """Stop starting new chunks; what is queued in librdkafka still goes out."""
        self._resume.clear()
        if not self._stop_new.is_set():
            self.stats.state = "paused"

    def resume(self) -> None:
        self._resume.set()
        if not self._stop_new.is_set():
            self.stats.state = "watching" if self.folder is not None else "sending"

    def request_stop(self) -> None:
        """Stop watching and producing; the stop completes once every chunk is delivered."""
        self._stop_new.set()
        self._resume.set()
        self.stats.state = "draining"
        if self._watcher:
            self._watcher.stop()
        if self._followup:
            self._followup.stop()
        if self._producer is None:
            self._stopped.set()

    def force_stop(self) -> None:
        self._force.set()
        self.request_stop()
        if self._producer is not None:
            # Records already on their way are left to land, so the abort records produced
            # after them stay behind them in their partitions.
            self._producer.purge(in_queue=True, in_flight=False)

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def idle(self) -> bool:
        """Nothing queued, nothing being read, nothing awaiting delivery."""
        with self.stats.lock:
            busy = self.stats.files_queued or self.stats.files_in_progress
        return not busy and self._jobs.empty() and (self._producer is None or self._nothing_to_deliver(self._producer))

    def _nothing_to_deliver(self, producer: Producer) -> bool:
        # A failed producer may keep a record queued for ever: nothing will be delivered.
        return self._failed.is_set() or len(producer) == 0

    def snapshot(self) -> UploadSnapshot:
        pending = len(self._producer) if self._producer is not None else 0
        return self.stats.snapshot(pending_deliveries=pending)

    # --- threads ------------------------------------------------------------------------

    def _serve_deliveries(self) -> None:
        """Serve delivery reports and produce abort records until quit was asked and every
        record is delivered (or, forced, the abort records had a moment to go)."""
        producer = self._producer
        assert producer is not None
        while True:
            self._poll(producer, 0.2)
            try:
                self._send_aborts(producer)
            except Exception as exc:  # this thread must outlive any bug: it drains and stops the uploader
                LOG.exception("sending abort records failed")
                self.sink(Notice(level="error", message=f"sending abort records failed: {exc!r}", at=time.time()))
            # The upload threads are looked up here, not once before the loop: this thread
            # starts before them, and one listed without them ended the service (exit 0,
            # nothing reported) while a file was still being sent.
            senders = [t for t in self._threads if t.name.startswith("msi-upload")]
            if self._stop_new.is_set() and not any(t.is_alive() for t in senders) and self._aborts.empty():
                if self._force.is_set() or self._nothing_to_deliver(producer):
                    break
        if self._force.is_set():
            deadline = time.monotonic() + ABORT_GRACE_S
            while self._aborts_unacked and time.monotonic() < deadline:
                self._poll(producer, 0.1)
        if self._receipts:
            self._receipts.close()
        if self._registry:
            self._registry.close()
        self.stats.state = "stopped"
        self._stopped.set()

    def _poll(self, producer: Producer, timeout: float) -> None:
        try:
            producer.poll(timeout)
        except Exception as exc:  # a bug in accounting must not stop deliveries being served
            fatal = _fatal(exc)
            if fatal is not None:
                self._producer_failed(fatal)
            elif isinstance(exc, KafkaException):
                self.sink(Notice(level="error", message=f"Kafka: {describe_kafka_error(exc)}", at=time.time()))
            else:
                LOG.exception("delivery report handling failed")
                self.sink(Notice(level="error", message=f"delivery report handling failed: {exc!r}", at=time.time()))

    def _producer_failed(self, exc: KafkaException) -> None:
        """The producer failed for good (with the gapless guarantee: a record was refused)
        and sends nothing more. librdkafka raises that from poll() rather than telling
        error_cb, and delivery reports served in the same call can be lost to it, so every
        open upload fails here; their abort records are tried, and the registry keeps them
        for the next start."""
        with self.stats.lock:
            first = self._failure is None
            if first:
                self._failure = f"Kafka producer failed: {describe_kafka_error(exc)}"
            uploads = list(self._open)
        self._failed.set()
        reason = self._failure or ""
        for upload in uploads:
            self._finish(upload, "failed", reason)
        if first and not uploads:
            self.sink(Notice(level="error", message=reason, at=time.time()))

    def _send_aborts(self, producer: Producer) -> None:
        """Produce the abort records due, each once its upload's last record was produced."""
        while True:
            try:
                upload_id, headers, partition = due = self._aborts.get_nowait()
            except queue.Empty:
                return
            report = lambda err, _msg, uid=upload_id: self._abort_acked(uid, err)  # noqa: E731
            # (-1: an upload of an earlier version, whose records the partitioner placed by key)
            where = {"partition": partition} if partition >= 0 else {}
            try:
                producer.produce(self.settings.topic, b"", upload_id.encode(), headers=headers, on_delivery=report,
                                 **where)
            except BufferError:
                self._aborts.put(due)  # room comes with the next delivery reports
                return
            except KafkaException as exc:
                # The producer has failed for good: the registry keeps the upload unfinished,
                # and the next start withdraws it.
                LOG.warning("abort record of upload %s not sent: %s", upload_id, describe_kafka_error(exc))
                continue
            with self.stats.lock:
                self._aborts_unacked += 1

    def _abort_acked(self, upload_id: str, err: KafkaError | None) -> None:
        with self.stats.lock:
            self._aborts_unacked -= 1
        if err is None and self._registry:
            self._registry.finish(upload_id, "withdrawn")

    def _upload_loop(self) -> None:
        while not self._stop_new.is_set():
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            with self.stats.lock:
                self.stats.files_queued -= 1
                self.stats.files_in_progress += 1
            try:
                self._send(job)
            except Exception as exc:  # before its upload began (it has its own ending after)
                self._give_up(job, self._reason(exc))

    def _reason(self, exc: Exception) -> str:
        """One line for the operator on why a file was not sent."""
        if isinstance(exc, OSError):
            return f"cannot read: {exc.strerror or exc}"
        if self._failure and _fatal(exc) is not None:
            return self._failure
        if isinstance(exc, KafkaException):
            return f"cannot send: {describe_kafka_error(exc)}"
        LOG.error("upload failed", exc_info=exc)  # the traceback goes to the log file
        return f"unexpected error: {exc!r}"

    def _give_up(self, job: _Job, reason: str) -> None:
        """A file failed before its upload began: nothing of it was produced."""
        with self.stats.lock:
            self.stats.files_in_progress -= 1
            self.stats.files_failed += 1
        self.sink(FileUploadFailed(path=job.shown, reason=reason, at=time.time()))

    def _partition_of(self, upload_id: str) -> int:
        """Chosen here rather than by the partitioner: the registry knows it from the start,
        so a restart can look for the upload's records there (see msi_tui.engine.landed)."""
        return int(upload_id[:8], 16) % self._partitions

    def _send(self, job: _Job) -> None:
        """Read, hash and produce one file, then its closing record."""
        if job.folder_mtime_ns is not None:
            self._send_folder(job, job.folder_mtime_ns)
            return
        with open(job.path, "rb") as f:  # opened first: an unreadable file fails before anything is sent
            self._send_open(job, f)

    def _send_folder(self, job: _Job, mtime_ns: int) -> None:
        """One `dir` record, so that a folder left empty is made at the destination too."""
        upload_id = uuid.uuid4().hex

        def delivered(err: KafkaError | None, _msg: object) -> None:
            with self.stats.lock:
                self.stats.files_in_progress -= 1
                if err is not None:
                    self.stats.files_failed += 1
            if err is not None:
                self.sink(FileUploadFailed(path=job.shown, reason=f"delivery failed: {err.str()}", at=time.time()))
            elif self._registry:
                self._registry.mark(job.relpath, FOLDER_SIZE, 0, upload_id, 0, "done")

        headers = wire.dir_headers(upload_id, job.relpath, self.settings.source, mtime_ns)
        if not self._produce(b"", upload_id.encode(), headers, delivered, self._partition_of(upload_id)):
            delivered(KafkaError(KafkaError._PURGE_QUEUE, STOPPED), None)

    def _send_open(self, job: _Job, f: BinaryIO) -> None:
        st = os.fstat(f.fileno())
        size, mtime_ns, cs = st.st_size, st.st_mtime_ns, self.settings.chunk_size
        upload_id = uuid.uuid4().hex
        partition = self._partition_of(upload_id)
        common = wire.file_headers(upload_id, job.relpath, size, cs, self.settings.digest, self.settings.source,
                                   mtime_ns)
        chunks = wire.chunk_count(size, cs)
        upload = _Delivery(self, job, upload_id, size, mtime_ns, chunks, common, partition)
        if self._registry:  # before the first chunk: an uploader killed from here on is withdrawn at the next start
            self._registry.begin(upload_id, job.relpath, size, mtime_ns, cs, self.settings.digest, partition,
                                 job.from_watch)
        if self._followup:
            self._followup.begin(upload_id)
        with self.stats.lock:
            self._open.add(upload)
            self.stats.table.put(upload_id, path=job.shown, size=size, chunks_done=0, chunks_total=chunks,
                                 state="sending", started=time.time(), finished=None, source=self.settings.source)
        # From here on the upload ends only through _finish, whatever happens.
        ended: tuple[Outcome, str] | None
        try:
            self.sink(FileUploadStarted(path=job.shown, size=size, chunks=chunks, upload_id=upload_id, at=time.time()))
            ended = self._produce_file(upload, f)
        except Exception as exc:  # one file's trouble must not end the thread
            if (fatal := _fatal(exc)) is not None:
                if not fatal.args[0].fatal():
                    # produce() says only that the producer failed; why comes with the error
                    # the delivery thread's next poll() raises.
                    self._failed.wait(FATAL_CAUSE_WAIT_S)
                self._producer_failed(fatal)
            ended = ("failed", self._reason(exc))
        if ended is not None:
            self._finish(upload, *ended)
        self._stop_producing(upload)

    def _produce_file(self, upload: _Delivery, f: BinaryIO) -> tuple[Outcome, str] | None:
        """Produce every chunk and the closing record; None once all were produced, else
        how the upload ended instead."""
        job, size, cs, common = upload.job, upload.size, upload.chunk_size, upload.common
        key = upload.upload_id.encode()
        digest = new_hasher(self.settings.digest)
        per_block = max(1, READ_BLOCK // cs) if cs < READ_EACH_CHUNK_FROM else 1
        block, block_start = b"", -per_block  # the bytes read ahead, and the chunk index they start at
        for index in range(upload.chunks):
            if not self._resume.is_set():
                held_until = time.monotonic() + HELD_MID_FILE_S
                while not self._resume.wait(0.2):
                    if index and time.monotonic() > held_until and not self._stop_new.is_set():
                        return "held", ""
            if self._stop_new.is_set():
                return "stopped", STOPPED
            if upload.outcome is not None:  # its delivery failed: nothing more of it
                return None
            if index == block_start + per_block:
                # One read and one hash update per block rather than per chunk: each is a
                # system call or a release of the GIL that has to be won back.
                if os.fstat(f.fileno()).st_nlink == 0:  # an unlinked file still reads to its end
                    return "failed", DELETED
                block_start, want = index, min(per_block * cs, size - index * cs)
                block = f.read(want)
                if len(block) != want:
                    return "changed", ""
                digest.update(block)
            at = (index - block_start) * cs
            data = block if per_block == 1 else block[at:at + cs]
            if not self._produce(data, key, wire.chunk_headers(common, index), upload.reporter(index), upload.partition):
                return "stopped", STOPPED
            if index % PRODUCED_REPORT_EVERY == PRODUCED_REPORT_EVERY - 1 or index == upload.chunks - 1:
                with self.stats.lock:  # batched: one lock per chunk is measurable at 16 KiB
                    self.stats.chunks_produced += index % PRODUCED_REPORT_EVERY + 1
        grew = f.read(1)
        try:
            after = os.stat(job.path)
        except FileNotFoundError:
            return "failed", DELETED
        if grew or (after.st_size, after.st_mtime_ns) != (size, upload.mtime_ns):
            return "changed", ""
        if self._registry:  # killed from here on, a restart looks for the end record before withdrawing
            self._registry.finish(upload.upload_id, "ending")
        if not self._produce(b"", key, wire.end_headers(common, digest.hexdigest()), upload.closing_acked,
                             upload.partition):
            return "stopped", STOPPED
        return None

    def _produce(self, value: bytes, key: bytes, headers: wire.Headers, on_delivery, partition: int) -> bool:  # noqa: ANN001
        """Produce one record, waiting while librdkafka's queue is full. False if forced to stop."""
        producer = self._producer
        assert producer is not None
        while True:
            try:
                producer.produce(self.settings.topic, value, key, partition=partition, headers=headers,
                                 on_delivery=on_delivery)
                return True
            except BufferError:
                if self._force.is_set():
                    return False
                producer.poll(0.05)  # room appears as deliveries are reported

    # --- how an upload ends (upload threads and the delivery-report thread) -------------

    def _finish(self, upload: _Delivery, outcome: Outcome, reason: str = "") -> None:
        """End an upload, once: whoever comes second (a failed delivery reported while the
        thread still reads, say) changes nothing. Any ending but done withdraws it."""
        with self.stats.lock:
            if upload.outcome is not None:
                return
            upload.outcome = outcome
            self._open.discard(upload)
            self.stats.files_in_progress -= 1
            if outcome == "done":
                self.stats.files_done += 1
            elif outcome not in ("changed", "held"):
                self.stats.files_failed += 1
            self.stats.table.update(upload.upload_id, state=outcome, finished=time.time())
            withdraw = outcome != "done" and not upload.producing
        if withdraw:
            self._queue_abort(upload)
        if outcome != "done" and self._followup:
            self._followup.forget(upload.upload_id)
        job = upload.job
        if outcome == "done":
            self._completed(upload)
        elif outcome == "changed":
            self._changed(job, upload.size)
        elif outcome == "held":
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"{job.shown} was paused mid-way for {HELD_MID_FILE_S:.0f} s: withdrawn, it is sent again "
                "from its start once resumed")))
            self._enqueue(job, upload.size)
        else:
            self.sink(FileUploadFailed(path=job.shown, reason=reason, at=time.time()))

    def _stop_producing(self, upload: _Delivery) -> None:
        """The upload thread is done with `upload`: withdraw it now if it ended otherwise than done."""
        with self.stats.lock:
            upload.producing = False
            withdraw = upload.outcome not in (None, "done")
        if withdraw:
            self._queue_abort(upload)

    def _queue_abort(self, upload: _Delivery) -> None:
        self._aborts.put((upload.upload_id, wire.abort_headers(upload.common), upload.partition))

    def _changed(self, job: _Job, size: int) -> None:
        """The file changed while being sent: send it again (a file given by hand only so often)."""
        self.sink(FileChangedDuringUpload(path=job.shown, at=time.time()))
        if job.from_watch and self._watcher is not None:
            self._watcher.recheck(job.relpath)
        elif job.attempt < MANUAL_RETRIES:
            self._enqueue(_Job(job.path, job.relpath, False, job.attempt + 1), size)
        else:
            with self.stats.lock:
                self.stats.files_failed += 1
            self.sink(FileUploadFailed(path=job.shown, reason="kept changing while being sent", at=time.time()))

    def _delivery_failed(self, upload: _Delivery, err: KafkaError) -> None:
        if err.code() in _PURGED:
            self._finish(upload, "stopped", f"{STOPPED} (quit without waiting)")
        else:
            self._finish(upload, "failed", f"delivery failed: {err.str()}")

    def _completed(self, upload: _Delivery) -> None:
        job = upload.job
        if self._registry:
            self._registry.finish(upload.upload_id, "done")
            if job.from_watch:
                self._registry.mark(job.relpath, upload.size, upload.mtime_ns, upload.upload_id,
                                    self.settings.chunk_size, "done")
        if self._followup:
            self._followup.expect(Sent(upload.upload_id, job.relpath, upload.size, upload.mtime_ns, time.time()),
                                  job.from_watch)
        self.sink(FileUploaded(path=job.shown, size=upload.size, chunks=upload.chunks,
                               upload_id=upload.upload_id, seconds=time.monotonic() - upload.started, at=time.time()))
        if self._outage_reported:
            self._outage_reported = False
            self.stats.connection = "connected"
            self.sink(Notice(level="info", message="Kafka is reachable again", at=time.time()))

    def _on_client_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if not self._outage_reported:
                self._outage_reported = True
                self.stats.connection = "unreachable"
                self.sink(Notice(level="warning", message=f"Kafka unreachable, chunks wait and are retried: {err.str()}", at=time.time()))
        elif err.fatal():
            self.sink(Notice(level="error", message=f"Kafka producer failed: {err.str()}", at=time.time()))
        else:
            self.sink(Notice(level="warning", message=f"Kafka: {err.str()}", at=time.time()))
