"""The reconstruct service: a consumer group rebuilding files into an output folder.

At-least-once with nothing lost: the partition ledger (msi_tui.engine.ledger) decides every
offset stored, and the stored offset never passes a record that was neither applied nor
refused, nor the first record of an upload still open. A crash or a rebalance therefore
replays whatever an unfinished file still needs; replayed chunks are harmless (the
assembly knows which chunks it has), and uploads that ended already are skipped by their
receipt (msi_tui.engine.receipts). docs/architecture.md draws the whole picture.

One process is one member of the group: a single consumer fetches, and n worker threads
rebuild (msi_tui.engine.rebuild), each partition always on the same worker so its records
stay in order. (One consumer per thread made every start a chain of rebalances, 2-3 s
before the first byte, and moved half-rebuilt files between threads of the same process.)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from msi_tui.engine import wire
from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.disk_writer import DiskWriter
from msi_tui.engine.events import Notice, Sink, guarded
from msi_tui.engine.failures import describe
from msi_tui.engine.journal import Journal
from msi_tui.engine.kafka_clients import (
    ConnectionWatch,
    check_reachable,
    consumer_settings,
    describe_kafka_error,
    ensure_topic,
    take_records,
)
from msi_tui.engine.kafka_records import partition_of
from msi_tui.engine.ledger import Ledger
from msi_tui.engine.output import ConflictPolicy, OutputFolder, UnsafePath, allow_open_files
from msi_tui.engine.platform_caps import caps
from msi_tui.engine.rebuild import Rebuilder
from msi_tui.engine.rebuild_context import RebuildContext
from msi_tui.engine.receipts import ReceiptBook
from msi_tui.engine.stats import ReconstructSnapshot, ReconstructStats
from msi_tui.errors import OperatorError
from msi_tui.paths import state_dir

DEFAULT_GROUP_ID = "msi-tui-reconstruct"
# An upload whose records stop while its partition moves on for this long is abandoned. Ten
# minutes: twice the longest a live uploader's chunks can be held up and still be sent
# (librdkafka retries a record for at most 5 min by default), so only an uploader that is
# gone, or has given up, loses its upload; and short enough that a crashed uploader's upload
# is not re-read by every restart for long.
DEFAULT_ABANDON_AFTER_S = 600.0
LAG_EVERY_S = 5.0
BATCH_BYTES = 8 << 20  # what the consumer takes from librdkafka at a time
IN_FLIGHT_BYTES = 16 << 20  # records handed to workers and not yet applied; beyond it, fetching waits
STUCK_AFTER_S = 5.0  # workers this long over IN_FLIGHT_BYTES (a full disk): pause and keep polling
HAND_OVER_WAIT_S = 30.0  # how long a revoke waits for the workers to leave the partitions
RECEIPTS_WAIT_S = 10.0  # how long a new owner waits to have read the receipts written before it
LOG = logging.getLogger("msi_tui.reconstruct")
# A worker's queue: (partition, generation, records, their bytes), or None to stop.
_Work = queue.SimpleQueue[tuple[int, int, list[Message], int] | None]


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
    abandon_after_s: float = DEFAULT_ABANDON_AFTER_S
    by_source: bool = False  # lay files out as OUT/<source>/<path>

    def __post_init__(self) -> None:
        if self.n_threads < 1:
            raise OperatorError(f"the number of threads must be at least 1 (got {self.n_threads})")
        if not self.group_id.strip():
            raise OperatorError("the consumer group id must not be empty")
        if self.abandon_after_s <= 0:
            raise OperatorError(f"--abandon-after must be a positive number of seconds (got {self.abandon_after_s:g})")


class Reconstructor:
    """The reconstruct service (see msi_tui.engine.service.ReconstructService)."""

    def __init__(self, config: ClusterConfig, settings: ReconstructSettings, sink: Sink) -> None:
        self.config = config
        self.settings = settings
        self.sink = guarded(sink, LOG)
        self.output_dir = settings.output_dir
        self.group_id = settings.group_id
        self.stats = ReconstructStats(threads=settings.n_threads)
        self._connection = ConnectionWatch(self.stats, self.sink, "reconstruction waits")
        self.output = OutputFolder(settings.output_dir, settings.on_conflict)
        self.receipts = ReceiptBook(config, settings.topic, settings.group_id)
        self._stop = threading.Event()
        self.ctx = RebuildContext(
            output=self.output, output_dir=settings.output_dir.absolute(), group_id=settings.group_id,
            by_source=settings.by_source,
            direct_writes=settings.direct_writes, ledger=Ledger(int(settings.abandon_after_s * 1000)),
            receipts=self.receipts, journal=None, stats=self.stats, sink=self.sink, stop=self._stop,
            paused=threading.Event())
        self._lag: dict[int, int] = {}
        self._generation = 0
        self._pending: dict[int, int] = {}  # partition -> batches queued or being applied
        self._in_flight = 0  # bytes of those batches
        self._flow = threading.Condition(self.ctx.lock)
        self._workers: list[_Work] = []
        self._reassigned = False
        self._unstored: set[int] = set()  # partitions whose safe offset may have moved since last stored
        self._stopped = threading.Event()
        self._running = 0

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Check the output folder, the broker and the topic, then start the consumer and
        the rebuilding threads."""
        try:
            cleaned = self.output.prepare()
        except (OSError, UnsafePath) as exc:
            raise OperatorError(f"cannot write to output folder {self.output_dir}: {describe(exc)}") from None
        if cleaned:
            self.sink(Notice(level="info", at=time.time(), message=(
                f"removed {len(cleaned)} staged files a stopped reconstructor left in {self.output_dir}")))
        allow_open_files()
        admin = check_reachable(self.config)
        ensure_topic(admin, self.settings.topic, self.settings.partitions)
        self.receipts.start(admin, write=True)
        if self.receipts.unavailable:
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"no receipts ({self.receipts.unavailable}): a member that takes over a partition may publish "
                "again files published just before; this member's own restarts still skip them")))
        self.ctx.journal = Journal(state_dir() / "reconstructed.sqlite3", self.output_dir, self.group_id)
        conf = consumer_settings(self.config, self.group_id)
        conf.update(self._connection.client_settings(statistics=True))
        try:
            consumer = Consumer(conf)
        except KafkaException as exc:
            raise OperatorError(f"consumer settings rejected: {describe_kafka_error(exc)}") from None
        self.stats.connection = "connected"
        self.stats.state = "consuming"
        self._running = 1
        for i in range(self.settings.n_threads):
            work: _Work = queue.SimpleQueue()
            name = f"msi-rebuild-{i}"
            writer = DiskWriter(f"{name}-write") if caps.disk_threads else None
            rebuilder = Rebuilder(self.ctx, wire.decoder(self.settings.max_file_size), writer)
            self._workers.append(work)
            threading.Thread(target=self._work_loop, args=(work, rebuilder), name=name, daemon=True).start()
        threading.Thread(target=self._consume_loop, args=(consumer,), name="msi-consume", daemon=True).start()

    def pause(self) -> None:
        self.ctx.paused.set()
        self.stats.state = "paused"

    def resume(self) -> None:
        self.ctx.paused.clear()
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
        with self.ctx.lock:
            in_progress = len(self.ctx.assemblies)
        return self.stats.snapshot(files_in_progress=in_progress)

    # --- the consumer thread -------------------------------------------------------------

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
                want_paused = behind or self.ctx.paused.is_set()
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
                by_partition.setdefault(partition_of(msg), []).append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                self.sink(Notice(level="warning", message=f"Kafka: {err.str()}", at=time.time()))
        workers = self._workers
        total = 0
        for partition, records in by_partition.items():
            size = sum(len(m) for m in records)
            total += size
            with self._flow:
                generation = self.ctx.owned.get(partition)
                if generation is None:
                    continue  # revoked while these were on their way
                self._pending[partition] = self._pending.get(partition, 0) + 1
                self._in_flight += size
            workers[partition % len(workers)].put((partition, generation, records, size))
        return total

    def _work_loop(self, work: _Work, rebuilder: Rebuilder) -> None:
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
                    rebuilder.apply(partition, generation, batch.records)
                except Exception as exc:  # a worker must report, not vanish silently
                    self._halt(partition, generation, exc)
                finally:
                    with self._flow:
                        self._pending[partition] -= batch.items
                        self._in_flight -= batch.size
                        self._unstored.add(partition)  # (the consumer thread stores it)
                        self._flow.notify_all()
        rebuilder.close()

    def _halt(self, partition: int, generation: int, exc: Exception) -> None:
        """An error no step of a batch caught (a fault of ours): stop applying the partition's
        records here, so its offset stays before the batch; a restart or the partition's
        next owner replays it."""
        LOG.error("rebuilding partition %d", partition, exc_info=exc)
        with self._flow:
            if self.ctx.owns(partition, generation):
                self.ctx.ledger.halt(partition)
        self.sink(Notice(level="error", at=time.time(), message=(
            f"partition {partition} stopped after an internal error ({exc!r}); its records are read again "
            "at the next start or hand-over, nothing is skipped")))

    # --- offsets and the group -------------------------------------------------------------

    def _store_offsets(self, consumer: Consumer, partitions: set[int] | list[int]) -> None:
        offsets = []
        with self.ctx.lock:
            for partition in partitions:
                offset = self.ctx.ledger.safe_offset(partition)
                if offset is not None:
                    offsets.append(TopicPartition(self.settings.topic, partition, offset))
        if offsets:
            try:
                consumer.store_offsets(offsets=offsets)
            except KafkaException:
                pass  # the partition was just revoked: its new owner replays from the last commit

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the partitions on from their committed offsets, once the receipts written
        before are read (so uploads that ended at an earlier owner are skipped)."""
        try:
            committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        except KafkaException:
            committed = {}  # each partition's position is then set by its first record
        with self._flow:
            for tp in partitions:
                self._generation += 1
                self.ctx.owned[tp.partition] = self._generation
                self.ctx.ledger.assign(tp.partition, committed.get(tp.partition))
            self._reassigned = True
        if self.receipts.active and not self.receipts.sync(RECEIPTS_WAIT_S):
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"receipts not read within {RECEIPTS_WAIT_S:.0f} s: files published by an earlier owner of "
                f"partitions {_numbers(partitions)} may be published again")))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Let the workers finish with the partitions, have the receipts delivered, commit
        what is safe, then forget their unfinished files (the next owner replays them)."""
        revoked = self._disown(partitions)
        self._store_offsets(consumer, revoked)
        left = self.receipts.flush(RECEIPTS_WAIT_S)
        if left:
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"{left} receipts not delivered: the next owner may publish those files again")))
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
                self.ctx.owned.pop(p, None)
            if not self._flow.wait_for(lambda: not any(self._pending.get(p) for p in gone), HAND_OVER_WAIT_S):
                busy = [p for p in gone if self._pending.get(p)]
                self.sink(Notice(level="warning", at=time.time(), message=(
                    f"handing over partitions {_numbers(busy)}: a rebuilding thread is still busy with them "
                    f"after {HAND_OVER_WAIT_S:.0f} s; going on (it stops at its next record)")))
        return gone

    def _drop_partitions(self, partitions: set[int]) -> None:
        with self._flow:
            dropped = []
            for p in partitions:
                for uid in self.ctx.ledger.revoke(p):
                    if uid in self.ctx.assemblies:
                        dropped.append(self.ctx.assemblies.pop(uid))
                self._lag.pop(p, None)
        for a in dropped:
            self.ctx.hand_over(a)

    def _leave(self, consumer: Consumer) -> None:
        """Finish what the workers hold, commit, leave the group, stop the workers."""
        self._stop.set()  # a worker retrying a record on a full disk gives up; the rest finish
        try:
            with self._flow:
                if not self._flow.wait_for(lambda: not any(self._pending.values()), HAND_OVER_WAIT_S):
                    self.sink(Notice(level="warning", at=time.time(), message=(
                        f"stopping: rebuilding threads still busy after {HAND_OVER_WAIT_S:.0f} s; "
                        "what they hold is read again next time")))
            self._on_revoke(consumer, consumer.assignment())
            consumer.close()
        except Exception as exc:
            self.sink(Notice(level="warning", message=f"closing consumer: {exc}", at=time.time()))
        for work in self._workers:
            work.put(None)
        self.receipts.close()
        with self.ctx.lock:
            self._running = 0
        if self.ctx.journal:
            self.ctx.journal.close()
        self.output.close()
        self.stats.state = "stopped"
        self._stopped.set()

    def _measure_lag(self, consumer: Consumer) -> None:
        try:
            assignment = consumer.assignment()
            positions = consumer.position(assignment) if assignment else []
            for tp in positions:
                # Cached from the last fetch: a query would queue behind the long-polling
                # fetch on the same connection, holding up the records for a fetch wait a partition.
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue  # nothing fetched from it yet
                with self.ctx.lock:
                    # No position until a record of the partition is read: reading resumes at
                    # the committed offset, or (a new group) at the start of what is kept.
                    known = self.ctx.ledger.position(tp.partition)
                    at = tp.offset if tp.offset >= 0 else known if known is not None else max(0, low)
                    self._lag[tp.partition] = max(0, high - at)
        except KafkaException:
            return
        with self.ctx.lock:
            total = sum(self._lag.values())
        self.stats.lag = total

@dataclass
class _Batch:
    """Records of one partition a worker applies at once: `items` hand-overs, `size` bytes."""

    records: list[Message] = field(default_factory=list)
    size: int = 0
    items: int = 0


def _numbers(partitions: list[TopicPartition] | list[int]) -> str:
    return ", ".join(str(p.partition if isinstance(p, TopicPartition) else p) for p in partitions)
