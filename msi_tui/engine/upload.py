"""The upload service: files (one given by hand, or every file of a watched folder) read by
`n_threads` upload threads (msi_tui.engine.upload_job) into one shared Producer
(msi_tui.engine.producing), with every delivery accounted for.

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
import threading
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from confluent_kafka import KafkaError, KafkaException

from msi_tui.engine import events, wire
from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.events import Notice, Sink
from msi_tui.engine.followup import Followup
from msi_tui.engine.kafka_clients import check_reachable, describe_kafka_error, ensure_topic, producer_settings
from msi_tui.engine.landed import settle_unfinished
from msi_tui.engine.producing import ProducerLink, fatal_cause
from msi_tui.engine.receipts import ReceiptBook
from msi_tui.engine.registry import FOLDER_SIZE, Registry, Sent
from msi_tui.engine.stats import UploadSnapshot, UploadStats
from msi_tui.engine.threads import start_guarded
from msi_tui.engine.upload_job import HELD_MID_FILE_S, STOPPED, Delivery, Job, Outcome, Producing, produce_file, refusal
from msi_tui.engine.upload_settings import UploadSettings
from msi_tui.engine.watch import FolderWatcher
from msi_tui.engine.wire import shown_name
from msi_tui.errors import OperatorError
from msi_tui.paths import state_dir

MANUAL_RETRIES = 3  # a file given by hand that keeps changing is retried this often
FATAL_CAUSE_WAIT_S = 5.0
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
LOG = logging.getLogger(__name__)


class Uploader:
    """The upload service: a watched folder (optional), upload threads, one Producer."""

    def __init__(self, config: ClusterConfig, settings: UploadSettings, sink: Sink) -> None:
        self.config = config
        self.settings = settings
        self.sink = sink
        self.folder = settings.folder
        self.stats = UploadStats()
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._stop_new = threading.Event()  # no new chunks: quit was asked
        self._stopped = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._threads: list[threading.Thread] = []
        self._link: ProducerLink | None = None
        self._watcher: FolderWatcher | None = None
        self._registry: Registry | None = None
        self._receipts: ReceiptBook | None = None
        self._followup: Followup | None = None
        self._partitions = 1
        self._open: set[Delivery] = set()  # uploads begun and not ended (under stats.lock)
        self._died: str | None = None  # which thread of ours ended unexpectedly, and why

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Check the broker and topic, then start the threads. Raises OperatorError."""
        if self.folder is not None and not self.folder.is_dir():
            raise OperatorError(f"folder to watch does not exist: {self.folder}")
        # Made first: it connects while the broker and the topic are checked, not after.
        link = ProducerLink(producer_settings(self.config, self.settings.chunk_size, self.settings.queue_max_size),
                            self.settings.topic, self.stats, self.sink, self._fail_open_uploads, self._withdrawn)
        try:
            admin = check_reachable(self.config)
            self._partitions = ensure_topic(admin, self.settings.topic, self.settings.partitions)
            self._registry = Registry.open(state_dir() / "uploads.sqlite3",
                                           f"{self.config.bootstrap}/{self.settings.topic}", self.folder, self.sink)
            unfinished = self._registry.take_over_unfinished()
        except BaseException:
            del link  # (destroyed with its connection attempts; nothing was queued)
            raise
        self._link = link
        self.stats.connection = "connected"
        self.stats.source = self.settings.source
        # Uploads an earlier run began and never finished: sent whole, or to be withdrawn.
        for upload_id, headers, partition in settle_unfinished(self.config, self.settings.topic, self._registry,
                                                               unfinished, self.sink):
            link.queue_abort(upload_id, headers, partition)
        if self.folder is not None:  # (a file given by hand: its command ends at delivery)
            self._followup = Followup(self.folder, self._registry, self.stats, self.sink, self.settings.cleanup,
                                      self.settings.receipt_timeout_s)
            self._receipts = self._followup.follow(self.config, self.settings.topic, admin)
        self._threads.append(start_guarded(self._serve_deliveries, "msi-deliveries", self._thread_died))
        self._threads += [start_guarded(self._upload_loop, f"msi-upload-{i}", self._thread_died)
                          for i in range(self.settings.n_threads)]
        if self.folder is not None:
            # --resend only stops the registry from skipping files: every upload is still
            # written down, so that it can be withdrawn should this run not finish it.
            self._watcher = FolderWatcher(
                self.folder,
                lambda path, relpath, size, _mtime: self._enqueue(Job(path, relpath, from_watch=True), size),
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

    # --- what is to be sent -------------------------------------------------------------

    def enqueue_file(self, path: Path) -> None:
        """Send one file (its name is the relative path on the other side)."""
        path = Path(path)
        if not path.is_file():
            raise OperatorError(f"no such file: {path}")
        self._enqueue(Job(path, path.name, from_watch=False), path.stat().st_size)

    def _on_folder(self, relpath: str, mtime_ns: int) -> None:
        """A folder of the watched tree: its dir record is sent once (it may stay empty)."""
        registry = self._registry
        if refusal(relpath) is None and registry is not None and registry.is_done(relpath, FOLDER_SIZE, 0):
            return
        assert self.folder is not None
        self._enqueue(Job(self.folder / relpath, relpath, from_watch=True, folder_mtime_ns=mtime_ns), 0)

    def _on_unreadable(self, relpath: str, why: str) -> None:
        """A folder of the watched tree cannot be listed: its files cannot be sent."""
        with self.stats.lock:
            self.stats.files_failed += 1
        self.sink(events.FileUploadFailed(path=shown_name(relpath) + "/", at=time.time(),
                                   reason=f"cannot read this folder ({why}): its files are not sent"))

    def _sent_before(self, relpath: str, size: int, mtime_ns: int) -> bool:
        """The registry has this version of a watched file as done (a refused name is
        never written there: _enqueue refuses it)."""
        registry = self._registry
        return registry is not None and refusal(relpath) is None and registry.is_done(relpath, size, mtime_ns)

    def _enqueue(self, job: Job, size: int) -> None:
        if self._stop_new.is_set():
            return
        # Once per version of a watched file: the watcher does not offer a version again.
        reason = refusal(job.relpath)
        if reason is not None:
            with self.stats.lock:
                self.stats.files_failed += 1
            self.sink(events.FileUploadFailed(path=job.shown, reason=reason, at=time.time()))
            return
        with self.stats.lock:
            self.stats.files_queued += 1
        self._jobs.put(job)
        if job.folder_mtime_ns is None:
            self.sink(events.FileQueued(path=job.shown, size=size, at=time.time()))

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
        if self._link is None:
            self._stopped.set()

    def force_stop(self) -> None:
        if self._link is not None:
            self._link.give_up()
        self.request_stop()

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def idle(self) -> bool:
        """Nothing queued, nothing being read, nothing awaiting delivery."""
        with self.stats.lock:
            busy = self.stats.files_queued or self.stats.files_in_progress
        return not busy and self._jobs.empty() and (self._link is None or self._link.nothing_to_deliver())

    def snapshot(self) -> UploadSnapshot:
        return self.stats.snapshot(pending_deliveries=self._link.pending() if self._link is not None else 0)

    # --- threads ------------------------------------------------------------------------

    def _serve_deliveries(self) -> None:
        assert self._link is not None
        # The upload threads are looked up each time, not once: this thread starts before
        # them, and one listed without them ended the service while a file was being sent.
        self._link.serve(lambda: self._stop_new.is_set() and not any(
            t.is_alive() for t in self._threads if t.name.startswith("msi-upload")))
        if self._receipts:
            self._receipts.close()
        if self._registry:
            self._registry.close()
        self.stats.state = "stopped"
        self._stopped.set()

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
        failure = self._link.failure if self._link is not None else None
        if failure and fatal_cause(exc) is not None:
            return failure
        if isinstance(exc, KafkaException):
            return f"cannot send: {describe_kafka_error(exc)}"
        LOG.error("upload failed", exc_info=exc)  # the traceback goes to the log file
        return f"unexpected error: {exc!r}"

    def _give_up(self, job: Job, reason: str) -> None:
        """A file failed before its upload began: nothing of it was produced."""
        with self.stats.lock:
            self.stats.files_in_progress -= 1
            self.stats.files_failed += 1
        self.sink(events.FileUploadFailed(path=job.shown, reason=reason, at=time.time()))

    def _partition_of(self, upload_id: str) -> int:
        """Chosen here rather than by the partitioner: the registry knows it from the start,
        so a restart can look for the upload's records there (see msi_tui.engine.landed)."""
        return int(upload_id[:8], 16) % self._partitions

    def _send(self, job: Job) -> None:
        """Read, hash and produce one file, then its closing record."""
        if job.folder_mtime_ns is not None:
            self._send_folder(job, job.folder_mtime_ns)
            return
        with open(job.path, "rb") as f:  # opened first: an unreadable file fails before anything is sent
            self._send_open(job, f)

    def _send_folder(self, job: Job, mtime_ns: int) -> None:
        """One `dir` record, so that a folder left empty is made at the destination too."""
        assert self._link is not None
        upload_id = uuid.uuid4().hex

        def delivered(err: KafkaError | None, _msg: object) -> None:
            with self.stats.lock:
                self.stats.files_in_progress -= 1
                self.stats.files_failed += err is not None
            if err is not None:
                self.sink(events.FileUploadFailed(path=job.shown, reason=f"delivery failed: {err.str()}",
                                                  at=time.time()))
            elif self._registry:
                self._registry.mark(job.relpath, FOLDER_SIZE, 0, upload_id, 0, "done")

        headers = wire.dir_headers(upload_id, job.relpath, self.settings.source, mtime_ns)
        if not self._link.produce(b"", upload_id.encode(), headers, delivered, self._partition_of(upload_id)):
            delivered(KafkaError(KafkaError._PURGE_QUEUE, STOPPED), None)

    def _send_open(self, job: Job, f: BinaryIO) -> None:
        link = self._link
        assert link is not None
        st = os.fstat(f.fileno())
        size, mtime_ns, cs = st.st_size, st.st_mtime_ns, self.settings.chunk_size
        upload_id = uuid.uuid4().hex
        partition = self._partition_of(upload_id)
        common = wire.file_headers(upload_id, job.relpath, size, cs, self.settings.digest, self.settings.source,
                                   mtime_ns)
        upload = Delivery(self.stats, self._delivered, job, upload_id, size, mtime_ns, cs, common, partition)
        if self._registry:  # before the first chunk: an uploader killed from here on is withdrawn at the next start
            self._registry.begin(upload_id, job.relpath, size, mtime_ns, cs, self.settings.digest, partition,
                                 job.from_watch)
        if self._followup:
            self._followup.begin(upload_id)
        with self.stats.lock:
            self._open.add(upload)
            self.stats.table.put(upload_id, path=job.shown, size=size, chunks_done=0, chunks_total=upload.chunks,
                                 state="sending", started=time.time(), finished=None, source=self.settings.source,
                                 partition=partition)
        # From here on the upload ends only through _finish, whatever happens.
        ended: tuple[Outcome, str] | None
        try:
            self.sink(events.FileUploadStarted(path=job.shown, size=size, chunks=upload.chunks, upload_id=upload_id,
                                        at=time.time()))
            ended = produce_file(upload, f, Producing(link.produce, self.stats, self.settings.digest, self._resume,
                                                      self._stop_new, self._ending))
        except Exception as exc:  # one file's trouble must not end the thread
            if (fatal := fatal_cause(exc)) is not None:
                if not fatal.args[0].fatal():
                    # produce() says only that the producer failed; why comes with the error
                    # the delivery thread's next poll() raises.
                    link.failed.wait(FATAL_CAUSE_WAIT_S)
                link.fail(fatal)
            ended = ("failed", self._reason(exc))
        if ended is not None:
            self._finish(upload, *ended)
        self._stop_producing(upload)

    def _ending(self, upload: Delivery) -> None:
        if self._registry:  # killed from here on, a restart looks for the end record before withdrawing
            self._registry.finish(upload.upload_id, "ending")

    # --- how an upload ends (upload threads and the delivery-report thread) -------------

    def _finish(self, upload: Delivery, outcome: Outcome, reason: str = "") -> None:
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
            self.sink(events.FileUploadFailed(path=job.shown, reason=reason, at=time.time()))

    def _stop_producing(self, upload: Delivery) -> None:
        """The upload thread is done with `upload`: withdraw it now if it ended otherwise than done."""
        with self.stats.lock:
            upload.producing = False
            withdraw = upload.outcome not in (None, "done")
        if withdraw:
            self._queue_abort(upload)

    def _queue_abort(self, upload: Delivery) -> None:
        assert self._link is not None
        self._link.queue_abort(upload.upload_id, wire.abort_headers(upload.common), upload.partition)

    def _withdrawn(self, upload_id: str) -> None:
        if self._registry:
            self._registry.finish(upload_id, "withdrawn")

    def _fail_open_uploads(self, reason: str) -> int:
        """The producer failed for good: every open upload fails; returns how many."""
        with self.stats.lock:
            uploads = list(self._open)
        for upload in uploads:
            self._finish(upload, "failed", reason)
        return len(uploads)

    def _changed(self, job: Job, size: int) -> None:
        """The file changed while being sent: send it again (a file given by hand only so often)."""
        self.sink(events.FileChangedDuringUpload(path=job.shown, at=time.time()))
        if job.from_watch and self._watcher is not None:
            self._watcher.recheck(job.relpath)
        elif job.attempt < MANUAL_RETRIES:
            self._enqueue(Job(job.path, job.relpath, False, job.attempt + 1), size)
        else:
            with self.stats.lock:
                self.stats.files_failed += 1
            self.sink(events.FileUploadFailed(path=job.shown, reason="kept changing while being sent", at=time.time()))

    def _delivered(self, upload: Delivery, err: KafkaError | None) -> None:
        """The closing record's delivery report (or the first failed one)."""
        if err is None:
            self._finish(upload, "done")
        elif err.code() in _PURGED:
            self._finish(upload, "stopped", f"{STOPPED} (quit without waiting)")
        else:
            self._finish(upload, "failed", f"delivery failed: {err.str()}")

    def _completed(self, upload: Delivery) -> None:
        job = upload.job
        if self._registry:
            self._registry.finish(upload.upload_id, "done")
            if job.from_watch:
                self._registry.mark(job.relpath, upload.size, upload.mtime_ns, upload.upload_id,
                                    self.settings.chunk_size, "done")
        if self._followup:
            self._followup.expect(Sent(upload.upload_id, job.relpath, upload.size, upload.mtime_ns, time.time()),
                                  job.from_watch)
        self.sink(events.FileUploaded(path=job.shown, size=upload.size, chunks=upload.chunks,
                               upload_id=upload.upload_id, seconds=time.monotonic() - upload.started, at=time.time()))
