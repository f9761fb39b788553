"""Files to chunks to one shared Producer, with every delivery accounted for.

Each of `n_threads` upload threads takes one file at a time and reads it once, in order:
every chunk is hashed and handed to librdkafka as it is read, so the whole-file digest
comes for free and goes out in the closing `end` record. librdkafka's own threads do the
network I/O for all files at once; `produce()` only copies into its queue, whose bound (the
seed's queue_max_size) is the backpressure: a full queue raises BufferError, and we serve
delivery reports and retry, never drop.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from confluent_kafka import KafkaError, Producer

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
from msi_tui.engine.kafka_clients import check_reachable, describe_kafka_error, ensure_topic, producer_settings
from msi_tui.engine.registry import Registry
from msi_tui.engine.stats import UploadSnapshot, UploadStats
from msi_tui.engine.watch import FileFilter, FolderWatcher
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
    use_registry: bool = True
    digest: Algorithm = DEFAULT_DIGEST

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class _Job:
    path: Path
    relpath: str
    from_watch: bool
    attempt: int = 1


class _Delivery:
    """Counts one upload's acknowledgements; runs in the thread serving delivery reports.

    Only every REPORT_EVERY-th chunk, the last chunk and the closing record ask for a
    delivery report: the producer is idempotent with the gapless guarantee, so records of
    one upload (one key, one partition) are acknowledged in order and none can be lost
    while a later one succeeds. An acknowledged chunk i therefore vouches for chunks 0..i,
    and the closing record's for the whole file: one Python callback per 16 chunks instead
    of one per chunk.
    """

    __slots__ = ("uploader", "job", "upload_id", "size", "mtime_ns", "chunks", "chunk_size", "acked", "closed", "started")

    def __init__(self, uploader: "Uploader", job: _Job, upload_id: str, size: int, mtime_ns: int, chunks: int) -> None:
        self.uploader, self.job, self.upload_id = uploader, job, upload_id
        self.size, self.mtime_ns, self.chunks = size, mtime_ns, chunks
        self.chunk_size = uploader.settings.chunk_size
        self.acked = 0  # chunks 0..acked-1 are acknowledged
        self.closed = False  # counted as done, failed or withdrawn: no more accounting
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
            self.uploader._completed(self)


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
        self._outage_reported = False

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
            ensure_topic(admin, self.settings.topic, self.settings.partitions)
        except BaseException:
            self._producer = None  # (destroyed with its connection attempts; nothing was queued)
            raise
        self.stats.connection = "connected"
        self._spawn(self._serve_deliveries, "msi-deliveries")
        for i in range(self.settings.n_threads):
            self._spawn(self._upload_loop, f"msi-upload-{i}")
        if self.folder is not None:
            if self.settings.use_registry:
                db = state_dir() / "uploads.sqlite3"
                destination = f"{self.config.bootstrap}/{self.settings.topic}"
                self._registry = Registry(db, destination, self.folder, self.sink)
            self._watcher = FolderWatcher(
                self.folder,
                self._on_ready,
                self.sink,
                file_filter=self.settings.file_filter,
                use_polling=self.settings.use_polling,
                quiet_seconds=self.settings.quiet_seconds,
                is_known=self._registry.is_done if self._registry else (lambda *_: False),
            )
            self._watcher.start()
        self.stats.state = "watching" if self.folder is not None else "sending"

    def _spawn(self, target, name: str) -> None:  # noqa: ANN001
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def enqueue_file(self, path: Path) -> None:
        """Send one file (its name is the relative path on the other side)."""
        path = Path(path)
        if not path.is_file():
            raise OperatorError(f"no such file: {path}")
        self._enqueue(_Job(path, path.name, from_watch=False), path.stat().st_size)

    def _on_ready(self, path: Path, relpath: str, size: int, _mtime_ns: int) -> None:
        self._enqueue(_Job(path, relpath, from_watch=True), size)

    def _enqueue(self, job: _Job, size: int) -> None:
        if self._stop_new.is_set():
            return
        with self.stats.lock:
            self.stats.files_queued += 1
        self._jobs.put(job)
        self.sink(FileQueued(path=job.relpath, size=size, at=time.time()))

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
        if self._producer is None:
            self._stopped.set()

    def force_stop(self) -> None:
        self._force.set()
        self.request_stop()
        if self._producer is not None:
            self._producer.purge()

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def idle(self) -> bool:
        """Nothing queued, nothing being read, nothing awaiting delivery."""
        with self.stats.lock:
            busy = self.stats.files_queued or self.stats.files_in_progress
        return not busy and self._jobs.empty() and (self._producer is None or len(self._producer) == 0)

    def snapshot(self) -> UploadSnapshot:
        pending = len(self._producer) if self._producer is not None else 0
        return self.stats.snapshot(pending_deliveries=pending)

    # --- threads ------------------------------------------------------------------------

    def _serve_deliveries(self) -> None:
        """Serve delivery reports until quit was asked and every chunk is delivered."""
        producer = self._producer
        assert producer is not None
        senders = [t for t in self._threads if t.name.startswith("msi-upload")]
        while True:
            try:
                producer.poll(0.2)
            except Exception as exc:  # a bug in accounting must not stop deliveries being served
                self.sink(Notice(level="error", message=f"delivery report handling failed: {exc!r}", at=time.time()))
            if self._stop_new.is_set() and not any(t.is_alive() for t in senders):
                if self._force.is_set() or len(producer) == 0:
                    break
        producer.flush(0)
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
            except Exception as exc:  # one file's trouble must not end the thread
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self._give_up(job, f"cannot read: {reason}")

    def _give_up(self, job: _Job, reason: str, delivery: _Delivery | None = None) -> None:
        with self.stats.lock:
            if delivery is not None:
                if delivery.closed:
                    return
                delivery.closed = True
                self.stats.table.update(delivery.upload_id, state="failed", finished=time.time())
            self.stats.files_in_progress -= 1
            self.stats.files_failed += 1
        self.sink(FileUploadFailed(path=job.relpath, reason=reason, at=time.time()))

    def _send(self, job: _Job) -> None:
        """Read, hash and produce one file, then its closing record."""
        try:
            job.relpath.encode("utf-8")
        except UnicodeEncodeError:
            self._give_up(job, "the file name is not valid UTF-8")
            return
        with open(job.path, "rb") as f:  # opened first: an unreadable file fails before anything is sent
            self._send_open(job, f)

    def _send_open(self, job: _Job, f: BinaryIO) -> None:
        st = os.fstat(f.fileno())
        size, mtime_ns, cs = st.st_size, st.st_mtime_ns, self.settings.chunk_size
        upload_id = uuid.uuid4().hex
        common = wire.file_headers(upload_id, job.relpath, size, cs, self.settings.digest)
        chunks = wire.chunk_count(size, cs)
        delivery = _Delivery(self, job, upload_id, size, mtime_ns, chunks)
        with self.stats.lock:
            self.stats.table.put(upload_id, path=job.relpath, size=size, chunks_done=0, chunks_total=chunks,
                                 state="sending", started=time.time(), finished=None)
        if self._registry and job.from_watch:
            self._withdraw_stale(job.relpath)
            self._registry.mark(job.relpath, size, mtime_ns, upload_id, cs, "sending")
        self.sink(FileUploadStarted(path=job.relpath, size=size, chunks=chunks, upload_id=upload_id, at=time.time()))
        key = upload_id.encode()
        digest = new_hasher(self.settings.digest)
        per_block = max(1, READ_BLOCK // cs) if cs < READ_EACH_CHUNK_FROM else 1
        block, block_start = b"", -per_block  # the bytes read ahead, and the chunk index they start at
        for index in range(chunks):
            if not self._resume.is_set():
                while not self._resume.wait(0.2):
                    pass
            if self._stop_new.is_set():
                self._withdraw(job, delivery, common, key, changed=False)
                return
            if index == block_start + per_block:
                # One read and one hash update per block rather than per chunk: each is a
                # system call or a release of the GIL that has to be won back.
                block_start, want = index, min(per_block * cs, size - index * cs)
                block = f.read(want)
                if len(block) != want:
                    self._withdraw(job, delivery, common, key, changed=True)
                    return
                digest.update(block)
            at = (index - block_start) * cs
            data = block if per_block == 1 else block[at:at + cs]
            if not self._produce(data, key, wire.chunk_headers(common, index), delivery.reporter(index)):
                return
            if index % PRODUCED_REPORT_EVERY == PRODUCED_REPORT_EVERY - 1 or index == chunks - 1:
                with self.stats.lock:  # batched: one lock per chunk is measurable at 16 KiB
                    self.stats.chunks_produced += index % PRODUCED_REPORT_EVERY + 1
        grew = f.read(1)
        after = os.stat(job.path)
        if grew or (after.st_size, after.st_mtime_ns) != (size, mtime_ns):
            self._withdraw(job, delivery, common, key, changed=True)
            return
        self._produce(b"", key, wire.end_headers(common, digest.hexdigest()), delivery.closing_acked)

    def _withdraw_stale(self, relpath: str) -> None:
        """An earlier run left this file half-sent: withdraw that upload, so reconstructors
        stop waiting for it (and stop holding their committed offsets back for it)."""
        assert self._registry is not None
        stale = self._registry.unfinished(relpath)
        if stale is not None:
            old_id, old_size, old_chunk_size = stale
            headers = wire.abort_headers(wire.file_headers(old_id, relpath, old_size, old_chunk_size))
            self._produce(b"", old_id.encode(), headers, None)

    def _produce(self, value: bytes, key: bytes, headers: wire.Headers, on_delivery) -> bool:  # noqa: ANN001
        """Produce one record, waiting while librdkafka's queue is full. False if forced to stop."""
        producer = self._producer
        assert producer is not None
        while True:
            try:
                producer.produce(self.settings.topic, value, key, headers=headers, on_delivery=on_delivery)
                return True
            except BufferError:
                if self._force.is_set():
                    return False
                producer.poll(0.05)  # room appears as deliveries are reported

    def _withdraw(self, job: _Job, delivery: _Delivery, common: wire.Headers, key: bytes, changed: bool) -> None:
        """Abandon an upload part-way: tell reconstructors to drop it, and retry if it changed."""
        self._produce(b"", key, wire.abort_headers(common), None)
        with self.stats.lock:
            delivery.closed = True
            self.stats.files_in_progress -= 1
            self.stats.table.update(delivery.upload_id, state="changed" if changed else "stopped", finished=time.time())
        if not changed:
            return
        self.sink(FileChangedDuringUpload(path=job.relpath, at=time.time()))
        if job.from_watch and self._watcher is not None:
            self._watcher.recheck(job.relpath)
        elif job.attempt < MANUAL_RETRIES:
            self._enqueue(_Job(job.path, job.relpath, False, job.attempt + 1), delivery.size)
        else:
            with self.stats.lock:
                self.stats.files_failed += 1
            self.sink(FileUploadFailed(path=job.relpath, reason="kept changing while being sent", at=time.time()))

    # --- delivery outcomes (delivery-report thread) --------------------------------------

    def _delivery_failed(self, delivery: _Delivery, err: KafkaError) -> None:
        if self._registry and delivery.job.from_watch:
            self._registry.mark(delivery.job.relpath, delivery.size, delivery.mtime_ns, delivery.upload_id,
                                self.settings.chunk_size, "failed")
        self._give_up(delivery.job, f"delivery failed: {err.str()}", delivery)

    def _completed(self, delivery: _Delivery) -> None:
        with self.stats.lock:
            if delivery.closed:
                return
            delivery.closed = True
            self.stats.files_in_progress -= 1
            self.stats.files_done += 1
            self.stats.table.update(delivery.upload_id, state="done", finished=time.time())
        job = delivery.job
        if self._registry and job.from_watch:
            self._registry.mark(job.relpath, delivery.size, delivery.mtime_ns, delivery.upload_id,
                                self.settings.chunk_size, "done")
        self.sink(FileUploaded(path=job.relpath, size=delivery.size, chunks=delivery.chunks,
                               upload_id=delivery.upload_id, seconds=time.monotonic() - delivery.started, at=time.time()))
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
