"""The reconstruct service: a consumer group rebuilding files into an output folder.

At-least-once with nothing lost: per partition, the stored offset never passes the first
record of the oldest upload still incomplete there. A crash or a rebalance therefore
replays whatever an unfinished file still needs, and replayed chunks are harmless (the
assembly knows which chunks it has; the journal knows which uploads were published).

One process is one member of the group: a single consumer fetches, and n worker threads
rebuild, each partition always on the same worker so its records stay in order. (One
consumer per thread made every start a chain of rebalances, 2-3 s before the first byte,
and moved half-rebuilt files between threads of the same process.)
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from msi_tui.engine import digest, wire
from msi_tui.engine.assembly import Assembly, DiskWriter
from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.events import FileKeptBoth, FileQuarantined, FileReconstructed, Notice, RecordRejected, Sink
from msi_tui.engine.journal import Journal
from msi_tui.engine.kafka_clients import (check_reachable, consumer_settings, describe_kafka_error, ensure_topic,
                                         take_records)
from msi_tui.engine.output import ConflictPolicy, OutputFolder, Staged, UnsafePath
from msi_tui.engine.stats import ReconstructSnapshot, ReconstructStats
from msi_tui.errors import OperatorError
from msi_tui.paths import state_dir

DEFAULT_GROUP_ID = "msi-tui-reconstruct"
REJECTS_REPORTED_ONE_BY_ONE = 50  # then one report per thousand, so a flood cannot drown the log
LAG_EVERY_S = 5.0
RETRY_AFTER_S = 2.0
BATCH_BYTES = 8 << 20  # what the consumer takes from librdkafka at a time
IN_FLIGHT_BYTES = 16 << 20  # records handed to workers and not yet applied; beyond it, fetching waits
STUCK_AFTER_S = 5.0  # workers this long over IN_FLIGHT_BYTES (a full disk): pause and keep polling
COMMIT_METADATA_IDS = 120  # 32-char ids under the broker's 4 KiB offset metadata limit
RECENTLY_PUBLISHED = 100_000  # upload ids remembered in memory; older ones are looked up
ORPHANS_REMEMBERED = 1024  # per worker: uploads already reported as missing their first chunk
_DISAGREES = "record disagrees with earlier records of the same upload"


@dataclass(frozen=True)
class ReconstructSettings:
    """What the reconstruct command's options set (defaults are the seed program's)."""

    output_dir: Path
    topic: str = "lecroy_files"
    n_threads: int = 5
    group_id: str = DEFAULT_GROUP_ID
    partitions: int = 5
    max_file_size: int = 1 << 40  # 1 TiB: a declared size above this is refused
    batch_size: int = 500
    on_conflict: ConflictPolicy = "keep-both"
    # O_DIRECT where the filesystem takes it (see msi_tui.engine.assembly); False: through the
    # page cache, which a throughput-capped virtual disk can write faster.
    direct_writes: bool = True

    def __post_init__(self) -> None:
        if self.n_threads < 1:
            raise OperatorError(f"the number of threads must be at least 1 (got {self.n_threads})")


@dataclass
class _Worker:
    """What one rebuilding thread keeps to itself."""

    decode: wire.Decoder
    writer: DiskWriter
    # Uploads the current batch wrote to (a run may wait to be written) and the bytes it
    # wrote: the counters shown are brought up to date once a batch, not once a chunk.
    touched: dict[str, Assembly] = field(default_factory=dict)
    written: int = 0
    # Uploads the batch completed: verified and published together once it is applied.
    complete: dict[str, tuple[Assembly, Staged]] = field(default_factory=dict)
    # Uploads whose later chunks came without their first (reported once each).
    orphans: OrderedDict[str, None] = field(default_factory=OrderedDict)


@dataclass
class _Batch:
    """Records of one partition a worker applies at once: `items` hand-overs, `size` bytes."""

    records: list[Message] = field(default_factory=list)
    size: int = 0
    items: int = 0


class Reconstructor:
    """The reconstruct service (see msi_tui.engine.service.ReconstructService)."""

    def __init__(self, config: ClusterConfig, settings: ReconstructSettings, sink: Sink) -> None:
        self.config = config
        self.settings = settings
        self.sink = sink
        self.output_dir = settings.output_dir
        self.group_id = settings.group_id
        self.stats = ReconstructStats(threads=settings.n_threads)
        self.output = OutputFolder(settings.output_dir, settings.on_conflict)
        self._lock = threading.Lock()
        self._assemblies: dict[str, Assembly] = {}
        self._published: OrderedDict[str, None] = OrderedDict()  # recent ids; the journal has all
        self._last_offset: dict[int, int] = {}
        self._lag: dict[int, int] = {}
        self._committed_at_assign: dict[int, int] = {}  # where reading resumes, until a record is read
        # Per partition, uploads finished here whose records lie past the committed offset
        # (an older unfinished upload pins it): named in the commit's metadata, so whoever
        # owns the partition next skips them instead of publishing them a second time.
        self._finished_past_commit: dict[int, dict[str, int]] = {}
        self._owned: dict[int, int] = {}  # partition -> generation; a revoke ends a generation
        self._generation = 0
        self._pending: dict[int, int] = {}  # partition -> batches queued or being applied
        self._in_flight = 0  # bytes of those batches
        self._flow = threading.Condition(self._lock)
        self._workers: list[queue.SimpleQueue] = []
        self._reassigned = False
        self._unstored: set[int] = set()  # partitions whose safe offset moved since last stored
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._stopped = threading.Event()
        self._running = 0
        self._blocked_by: str | None = None  # why the output folder refuses writes, while it does
        self._journal: Journal | None = None

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Check the output folder, the broker and the topic, then start the consumer and
        the rebuilding threads."""
        try:
            self.output.prepare()
        except OSError as exc:
            raise OperatorError(f"cannot write to output folder {self.output_dir}: {exc.strerror}") from None
        admin = check_reachable(self.config)
        ensure_topic(admin, self.settings.topic, self.settings.partitions)
        self._journal = Journal(state_dir() / "reconstructed.sqlite3", self.output_dir, self.group_id)
        conf = consumer_settings(self.config, self.group_id)
        conf["error_cb"] = self._on_client_error
        try:
            consumer = Consumer(conf)
        except KafkaException as exc:
            raise OperatorError(f"consumer settings rejected: {describe_kafka_error(exc)}") from None
        self.stats.connection = "connected"
        self.stats.state = "consuming"
        self._running = 1
        for i in range(self.settings.n_threads):
            work: queue.SimpleQueue = queue.SimpleQueue()
            self._workers.append(work)
            threading.Thread(target=self._work_loop, args=(work,), name=f"msi-rebuild-{i}", daemon=True).start()
        threading.Thread(target=self._consume_loop, args=(consumer,), name="msi-consume", daemon=True).start()

    def pause(self) -> None:
        self._paused.set()
        self.stats.state = "paused"

    def resume(self) -> None:
        self._paused.clear()
        self.stats.state = "consuming"

    def request_stop(self) -> None:
        """Leave the group after committing what is safe; unfinished files replay next time."""
        self._stop.set()
        self.stats.state = "stopping"
        if self._running == 0:
            self._stopped.set()

    force_stop = request_stop  # closing a consumer is quick; nothing to give up

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def snapshot(self) -> ReconstructSnapshot:
        with self._lock:
            in_progress = len(self._assemblies)
        return self.stats.snapshot(files_in_progress=in_progress)

    # --- consumer threads ----------------------------------------------------------------

    def _consume_loop(self, consumer: Consumer) -> None:
        """Fetch and hand each partition's records to its worker; pause while they catch up."""
        consumer.subscribe([self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)
        paused = False
        batch = self.settings.batch_size
        next_lag = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                with self._flow:
                    # Wait for the workers rather than pause (pausing drops what librdkafka
                    # prefetched), unless they are stuck: the group needs a poll now and then.
                    behind = not self._flow.wait_for(self._may_fetch, timeout=STUCK_AFTER_S)
                    reassigned, self._reassigned = self._reassigned, False
                    unstored, self._unstored = self._unstored, set()
                # Only this thread calls the consumer: confluent-kafka serialises calls from
                # several threads with a spin-wait that starves all but one.
                self._store_offsets(consumer, unstored)
                want_paused = behind or self._paused.is_set()
                if want_paused != paused or (paused and reassigned):
                    paused = want_paused
                    (consumer.pause if paused else consumer.resume)(consumer.assignment())
                messages = take_records(consumer, batch, 0.2)
                if messages:
                    nbytes = self._dispatch(messages)
                    # Size the next batch by bytes, not records: 500 records of 512 KiB
                    # would hold 256 MB at once.
                    record = max(1, nbytes // len(messages))
                    batch = max(1, min(self.settings.batch_size, BATCH_BYTES // record))
                if time.monotonic() >= next_lag:
                    self._measure_lag(consumer)
                    next_lag = time.monotonic() + LAG_EVERY_S
        except Exception as exc:  # the consumer thread must report, not vanish silently
            self.sink(Notice(level="error", message=f"consumer stopped: {exc}", at=time.time()))
        finally:
            self._leave(consumer)

    def _may_fetch(self) -> bool:
        return self._in_flight <= IN_FLIGHT_BYTES or self._stop.is_set()

    def _dispatch(self, messages: list[Message]) -> int:
        """Queue each partition's records, in order, on the worker that owns the partition;
        returns the bytes of the records read."""
        by_partition: dict[int, list[Message]] = {}
        for msg in messages:
            err = msg.error()
            if err is None:
                by_partition.setdefault(msg.partition(), []).append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                self.sink(Notice(level="warning", message=f"Kafka: {err.str()}", at=time.time()))
        workers = self._workers
        total = 0
        for partition, records in by_partition.items():
            size = sum(len(m) for m in records)
            total += size
            with self._lock:
                generation = self._owned.get(partition)
                if generation is None:
                    continue  # revoked while these were on their way
                self._pending[partition] = self._pending.get(partition, 0) + 1
                self._in_flight += size
            workers[partition % len(workers)].put((partition, generation, records, size))
        return total

    def _work_loop(self, work: queue.SimpleQueue) -> None:
        worker = self._new_worker()
        while (item := work.get()) is not None:
            # What else is queued for the same partition joins the batch: a batch grows when
            # the worker falls behind, and the files it completes are published together
            # (see OutputFolder.publish). The in-flight limit bounds it.
            batches: dict[tuple[int, int], _Batch] = {}
            while item is not None:
                partition, generation, records, size = item
                batch = batches.setdefault((partition, generation), _Batch())
                batch.records.extend(records)
                batch.size += size
                batch.items += 1
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    work.put(None)  # the stop sign: taken again once these are applied
            for (partition, generation), batch in batches.items():
                try:
                    self._apply(worker, partition, generation, batch.records)
                except Exception as exc:  # a worker must report, not vanish silently
                    self.sink(Notice(level="error", message=f"rebuilding partition {partition}: {exc}", at=time.time()))
                finally:
                    with self._flow:
                        self._pending[partition] -= batch.items
                        self._in_flight -= batch.size
                        self._flow.notify_all()
        worker.writer.close()

    def _new_worker(self) -> _Worker:
        name = threading.current_thread().name
        return _Worker(wire.Decoder(self.settings.max_file_size), DiskWriter(f"{name}-write"))

    def _owns(self, partition: int, generation: int) -> bool:
        return self._owned.get(partition) == generation

    def _apply(self, worker: _Worker, partition: int, generation: int, records: list[Message]) -> None:
        """Apply one partition's records in order, write what they left gathered, verify
        and publish the files they completed, then have the safe offset stored."""
        worker.touched.clear()
        worker.written = 0
        worker.complete.clear()  # (left by a batch that gave up: dropped with their partition)
        for msg in records:
            if not self._owns(partition, generation):
                return  # revoked: the next owner replays from the committed offset
            try:
                self._handle(msg, worker)  # (the retrying wrapper only once it fails)
            except (OSError, UnsafePath) as exc:
                if not self._until_done(partial(self._handle, msg, worker), partition, generation, exc):
                    return  # revoked or stopping
            if self._blocked_by:
                self._output_unblocked()
        if not self._until_done(partial(self._write_runs, worker), partition, generation):
            return
        if worker.complete:
            if not self._until_done(partial(self._verify_and_publish, worker), partition, generation):
                return  # revoked or stopping: the files stay pinned to the offset, replayed later
            for a, s in worker.complete.values():
                self._settle(a, s)
        if self._journal:
            self._journal.flush()
        with self.stats.lock:
            self.stats.messages_read += len(records)
            self.stats.bytes_written += worker.written
            for uid, assembly in worker.touched.items():
                self.stats.table.update(uid, chunks_done=assembly.received)
        with self._lock:
            if self._owns(partition, generation):
                self._last_offset[partition] = records[-1].offset()
                self._unstored.add(partition)  # the consumer thread stores it (see _consume_loop)

    def _until_done(self, step: Callable[[], None], partition: int, generation: int,
                    failed: Exception | None = None) -> bool:
        """Run one step of a batch (that already `failed` once, when given). While the
        output side is in trouble (disk full, permissions) retry it: the records behind it
        wait, fetching pauses. False when the partition was revoked or the service stops first."""
        while self._owns(partition, generation):
            if failed is not None:
                self._output_blocked(failed)
                if self._stop.wait(RETRY_AFTER_S):
                    return False
            try:
                step()
                return True
            except (OSError, UnsafePath) as exc:
                failed = exc
        return False

    def _write_runs(self, worker: _Worker) -> None:
        """Hand the batch's gathered chunks to the writers, not to be held in memory past the
        batch. Not waited for: an unfinished upload pins the stored offset to its first
        record (see _safe_offset), and a finished one waits for its writes to be verified."""
        for uid, assembly in worker.touched.items():
            if self._assemblies.get(uid) is assembly:  # (not withdrawn or handed over meanwhile)
                assembly.flush()
                assembly.settle(wait=False)

    def _output_blocked(self, exc: Exception) -> None:
        """Say once that the output folder refuses writes (disk full, permissions)."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        with self._lock:
            first = self._blocked_by is None
            self._blocked_by = reason
        if first:
            self.stats.state = "blocked"
            self.sink(Notice(level="error", at=time.time(), message=(
                f"cannot write to {self.output_dir}: {reason}. Reconstruction waits and retries every "
                f"{RETRY_AFTER_S:.0f} s; nothing is skipped")))

    def _output_unblocked(self) -> None:
        with self._lock:
            was, self._blocked_by = self._blocked_by, None
        if was is not None:
            self.stats.state = "paused" if self._paused.is_set() else "consuming"
            self.sink(Notice(level="info", message=f"{self.output_dir} is writable again: reconstruction resumed", at=time.time()))

    def _safe_offset(self, partition: int) -> int | None:
        """The offset a restart may resume from without losing any unfinished file."""
        with self._lock:
            last = self._last_offset.get(partition)
            pinned = [a.first_offset for a in self._assemblies.values() if a.partition == partition]
        if last is None:
            return None
        return min([last + 1, *pinned])

    def _store_offsets(self, consumer: Consumer, partitions) -> None:  # noqa: ANN001
        offsets = []
        for partition in partitions:
            offset = self._safe_offset(partition)
            if offset is not None:
                offsets.append(TopicPartition(self.settings.topic, partition, offset,
                                              metadata=self._finished_metadata(partition, offset)))
        if offsets:
            try:
                consumer.store_offsets(offsets=offsets)
            except KafkaException:
                pass  # the partition was just revoked: its new owner replays from the last commit

    def _finished_metadata(self, partition: int, offset: int) -> str:
        """Ids of uploads finished at or past `offset`, within Kafka's metadata size limit
        (beyond it a replay may publish a file twice: at least once, never lost)."""
        with self._lock:
            finished = self._finished_past_commit.get(partition, {})
            for uid in [u for u, first in finished.items() if first < offset]:
                del finished[uid]  # behind the commit: never replayed again
            ids = list(finished)[-COMMIT_METADATA_IDS:]
        return ",".join(ids)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the partitions on; learn which uploads past the committed offsets the
        previous owner finished."""
        with self._lock:
            for tp in partitions:
                self._generation += 1
                self._owned[tp.partition] = self._generation
            self._reassigned = True
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException:
            return  # replaying them costs time, never data
        with self._lock:
            for tp in committed:
                if tp.offset >= 0:
                    self._committed_at_assign[tp.partition] = tp.offset
                for uid in (tp.metadata or "").split(","):
                    if len(uid) == 32:
                        self._published[uid] = None

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Let the workers finish with the partitions, commit what is safe, then forget
        their unfinished files (the next owner replays them from the commit)."""
        revoked = self._disown(partitions)
        self._store_offsets(consumer, revoked)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException:
            pass  # nothing new stored, or the group moved on: the last commit stands
        self._drop_partitions(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group gave these partitions away without asking: nothing can be committed."""
        self._drop_partitions(self._disown(partitions))

    def _disown(self, partitions: list[TopicPartition]) -> set[int]:
        """End our ownership of the partitions and wait until no worker is applying their
        records (a worker stops at its next record); returns their numbers."""
        gone = {tp.partition for tp in partitions}
        with self._flow:
            for p in gone:
                self._owned.pop(p, None)
            self._flow.wait_for(lambda: not any(self._pending.get(p) for p in gone))
        return gone

    def _drop_partitions(self, partitions: set[int]) -> None:
        with self._lock:
            dropped = [a for a in self._assemblies.values() if a.partition in partitions]
            for a in dropped:
                del self._assemblies[a.meta.upload_id]
            for p in partitions:
                self._last_offset.pop(p, None)
                self._finished_past_commit.pop(p, None)
                self._lag.pop(p, None)
                self._committed_at_assign.pop(p, None)
        for a in dropped:
            self._drop(a, "handed over")

    def _leave(self, consumer: Consumer) -> None:
        """Finish what the workers hold, commit, leave the group, stop the workers."""
        self._stop.set()  # a worker retrying a record on a full disk gives up; the rest finish
        try:
            with self._flow:
                self._flow.wait_for(lambda: not any(self._pending.values()))
            self._on_revoke(consumer, consumer.assignment())
            consumer.close()
        except Exception as exc:
            self.sink(Notice(level="warning", message=f"closing consumer: {exc}", at=time.time()))
        for work in self._workers:
            work.put(None)
        with self._lock:
            self._running = 0
        if self._journal:
            self._journal.close()
        self.stats.state = "stopped"
        self._stopped.set()

    def _measure_lag(self, consumer: Consumer) -> None:
        try:
            assignment = consumer.assignment()
            positions = consumer.position(assignment) if assignment else []
            for tp in positions:
                # Cached from the last fetch: a query would queue behind the long-polling
                # fetch on the same connection, holding up the records for ~0.5 s a partition.
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue  # nothing fetched from it yet
                with self._lock:
                    # No position until a record of the partition is read: reading resumes at
                    # the committed offset, or (a new group) at the start of what is kept.
                    at = tp.offset if tp.offset >= 0 else self._committed_at_assign.get(tp.partition, max(0, low))
                    self._lag[tp.partition] = max(0, high - at)
        except KafkaException:
            return
        with self._lock:
            total = sum(self._lag.values())
        self.stats.lag = total

    # --- one record ------------------------------------------------------------------

    def _handle(self, msg: Message, worker: _Worker) -> None:
        """Apply one record. Raises OSError/UnsafePath only for trouble on our side."""
        value = msg.value() or b""
        headers = msg.headers()
        try:
            index = wire.next_chunk_index(headers)
            if index is not None:  # the common case: one more chunk of an upload begun earlier
                self._take_next_chunk(msg, worker, index, value)
                return
            meta = worker.decode(headers)
        except wire.WireError as exc:
            self._reject(msg, str(exc))
            return
        if meta.kind != "chunk" and value:
            self._reject(msg, f"{meta.kind} record carries data")
            return
        uid = meta.upload_id
        # No lock: only this thread changes its partitions' entries while it holds a batch.
        assembly = self._assemblies.get(uid)
        if assembly is None:
            if meta.kind != "chunk" or self._finished(uid):
                return  # a replay of a finished upload, or a withdrawn one we never started
            fd, staged = self.output.open_staged(uid)
            assembly = Assembly(meta, msg.partition(), msg.offset(), fd, staged, writer=worker.writer,
                                direct=self.settings.direct_writes)
            with self._lock:
                self._assemblies[uid] = assembly
            with self.stats.lock:
                self.stats.table.put(uid, path=meta.path, size=meta.size, chunks_done=0, chunks_total=meta.count,
                                     state="receiving", started=time.time(), finished=None)
        elif not self._goes_on(msg, worker, assembly):
            return
        elif not assembly.matches(meta):
            self._reject(msg, _DISAGREES)
            return
        if meta.kind == "abort":
            self._drop(assembly, "withdrawn")
            return
        if meta.kind == "end":
            assembly.expected_digest = meta.digest
            if assembly.complete:
                self._finish(assembly, worker)
        else:
            self._take_chunk(msg, worker, assembly, meta.index, value)

    def _take_next_chunk(self, msg: Message, worker: _Worker, index: int, value: bytes) -> None:
        """A chunk that names only its index (record format 3): its upload is its key."""
        uid = (msg.key() or b"").decode("ascii", "replace")
        assembly = self._assemblies.get(uid)
        if assembly is None:
            if not self._finished(uid):
                self._reject(msg, f"chunk {index} of an upload whose first chunk was not read here "
                                  "(reading began after it, or it was refused)", quietly=uid in worker.orphans)
                worker.orphans[uid] = None
                if len(worker.orphans) > ORPHANS_REMEMBERED:
                    worker.orphans.popitem(last=False)
        elif self._goes_on(msg, worker, assembly):
            self._take_chunk(msg, worker, assembly, index, value)

    def _goes_on(self, msg: Message, worker: _Worker, assembly: Assembly) -> bool:
        """Whether a record of an upload being rebuilt still counts: not when the upload is
        complete, waiting for the end of the batch (a replay), nor (refused) when the record
        is in another partition than the upload, whose file another thread may hold."""
        if assembly.meta.upload_id in worker.complete:
            return False
        if assembly.partition != msg.partition():
            self._reject(msg, _DISAGREES)
            return False
        return True

    def _take_chunk(self, msg: Message, worker: _Worker, assembly: Assembly, index: int, value: bytes) -> None:
        try:
            wrote = assembly.write(index, value)
        except wire.WireError as exc:
            self._reject(msg, str(exc))
            return
        if wrote:
            worker.touched[assembly.meta.upload_id] = assembly
            worker.written += len(value)
        if assembly.complete:
            self._finish(assembly, worker)

    def _finished(self, uid: str) -> bool:
        """Published already (here, by an earlier owner of the partition, or in an earlier run)."""
        return uid in self._published or bool(self._journal and self._journal.seen(uid))

    def _drop(self, assembly: Assembly, state: str) -> None:
        """Forget an unfinished upload and its staged file, once its handed-over writes are done."""
        with self._lock:
            self._assemblies.pop(assembly.meta.upload_id, None)
        assembly.abandon()
        self.output.discard_staged(assembly.fd, assembly.staged)
        with self.stats.lock:
            self.stats.table.update(assembly.meta.upload_id, state=state, finished=time.time())

    def _finish(self, a: Assembly, worker: _Worker) -> None:
        """A complete upload: on its way to the disk and through the digest, to be verified and
        published at the end of the batch together with the others the batch completes."""
        # An OSError on the way (disk full) leaves the assembly registered: the retried
        # record finds it complete and comes back here.
        a.seal()
        worker.complete[a.meta.upload_id] = (a, Staged(a.fd, a.staged, a.meta.path, a.meta.upload_id,
                                                      a.expected_digest, a.meta.algorithm))

    def _verify_and_publish(self, worker: _Worker) -> None:
        """Quarantine what the batch completed with a digest that does not match, publish
        the rest (OutputFolder.publish). Carries on where it stopped when run again."""
        for a, s in worker.complete.values():
            if not s.released and not a.verified():  # (the first waits for the batch's hashing)
                self.output.refuse(s, f"{digest.NAMES[a.meta.algorithm]} does not match what the uploader sent")
        self.output.publish([s for _a, s in worker.complete.values()])

    def _settle(self, a: Assembly, s: Staged) -> None:
        """Report where a finished upload went and remember it as done."""
        uid, path = a.meta.upload_id, a.meta.path
        published = s.published
        if published is None:
            with self.stats.lock:
                self.stats.files_quarantined += 1
                self.stats.table.update(uid, state="quarantined", finished=time.time())
            self.sink(FileQuarantined(path=path, reason=s.refused, quarantine_path=str(s.quarantined), at=time.time()))
        else:
            with self.stats.lock:
                self.stats.files_completed += 1
                self.stats.table.update(uid, path=published.path, state="verified", finished=time.time())
            self.sink(FileReconstructed(path=published.path, size=a.meta.size, upload_id=uid,
                                        seconds=time.monotonic() - a.started, duplicate=published.duplicate,
                                        at=time.time()))
            if published.older_kept_as:
                self.sink(FileKeptBoth(path=path, saved_as=published.older_kept_as, older_moved=True, at=time.time()))
            elif published.path != path:
                self.sink(FileKeptBoth(path=path, saved_as=published.path, at=time.time()))
        with self._lock:
            del self._assemblies[uid]
            self._finished_past_commit.setdefault(a.partition, {})[uid] = a.first_offset
            self._published[uid] = None
            if len(self._published) > RECENTLY_PUBLISHED:
                self._published.popitem(last=False)
        if self._journal:
            self._journal.add(uid, path)

    def _reject(self, msg: Message, reason: str, quietly: bool = False) -> None:
        """Count a refused record and report it (`quietly`: only count it, it was said)."""
        with self.stats.lock:
            self.stats.records_rejected += 1
            count = self.stats.records_rejected
        if quietly:
            return
        if count <= REJECTS_REPORTED_ONE_BY_ONE or count % 1000 == 0:
            if count > REJECTS_REPORTED_ONE_BY_ONE:
                reason = f"{reason} ({count} records refused so far)"
            self.sink(RecordRejected(partition=msg.partition(), offset=msg.offset(), reason=reason, at=time.time()))

    def _on_client_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if self.stats.connection != "unreachable":
                self.stats.connection = "unreachable"
                self.sink(Notice(level="warning", message=f"Kafka unreachable: {err.str()}", at=time.time()))
        else:
            self.sink(Notice(level="warning", message=f"Kafka: {err.str()}", at=time.time()))
