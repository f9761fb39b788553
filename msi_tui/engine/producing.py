"""The uploader's one Producer and the thread that serves its delivery reports.

Records are produced with backpressure: `produce()` only copies into librdkafka's queue,
whose bound (the seed's queue_max_size) makes it raise BufferError when full, and we serve
delivery reports and retry, never drop. Abort records are produced by the delivery thread
(it may wait for room in the queue, which a delivery report cannot), each behind its
upload's last record. The producer's errors are classified: an outage is said once and
waited out (librdkafka retries, see ConnectionWatch); a fatal error fails the open uploads
(see `on_fatal`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from msi_tui.engine import wire
from msi_tui.engine.events import Notice, Sink
from msi_tui.engine.kafka_clients import ConnectionWatch, describe_kafka_error
from msi_tui.engine.kafka_records import produced
from msi_tui.engine.stats import UploadStats
from msi_tui.errors import OperatorError

ABORT_GRACE_S = 2.0  # a forced stop still waits this long for its abort records to be acknowledged
LOG = logging.getLogger("msi_tui.upload")
DeliveryReport = Callable[[KafkaError | None, object], None]


def fatal_cause(exc: BaseException | None) -> KafkaException | None:
    """The fatal producer error `exc` is or was caused by: a delivery report that poll()
    serves while such an error is pending fails with a SystemError caused by it."""
    while exc is not None:
        if isinstance(exc, KafkaException) and exc.args:
            err = exc.args[0]
            if isinstance(err, KafkaError) and (err.fatal() or err.code() == KafkaError._FATAL):
                return exc
        exc = exc.__cause__ or exc.__context__
    return None


class ProducerLink:
    """One Producer, its abort records and its failures; `serve` is the delivery thread.

    `on_fatal(reason)` fails every open upload and returns how many there were;
    `on_withdrawn(upload_id)` is told each abort record acknowledged."""

    def __init__(self, conf: dict[str, object], topic: str, stats: UploadStats, sink: Sink,
                 on_fatal: Callable[[str], int], on_withdrawn: Callable[[str], None]) -> None:
        self.topic = topic
        self.stats = stats
        self.sink = sink
        self._on_fatal = on_fatal
        self._on_withdrawn = on_withdrawn
        self.connection = ConnectionWatch(stats, sink, "chunks wait and are retried")
        self.force = threading.Event()  # give up on undelivered records
        self.failed = threading.Event()  # the producer failed for good ...
        self.failure: str | None = None  # ... and why
        # Abort records due, as (upload id, headers, partition).
        self._aborts: queue.SimpleQueue[tuple[str, wire.Headers, int]] = queue.SimpleQueue()
        self._aborts_unacked = 0  # (under stats.lock)
        try:
            # Its error callback only runs once the delivery thread polls it.
            self.producer = Producer({**conf, **self.connection.client_settings(statistics=False)})
        except Exception as exc:  # a bad key in the operator's config file
            raise OperatorError(f"producer settings rejected: {describe_kafka_error(exc)}") from None

    # --- from any thread -----------------------------------------------------------------

    def produce(self, value: bytes, key: bytes, headers: wire.Headers, on_delivery: DeliveryReport | None,
                partition: int) -> bool:
        """Produce one record, waiting while librdkafka's queue is full. False if forced to stop."""
        producer = self.producer
        while True:
            try:
                producer.produce(self.topic, value, key, partition=partition, headers=produced(headers),
                                 on_delivery=on_delivery)
                return True
            except BufferError:
                if self.force.is_set():
                    return False
                producer.poll(0.05)  # room appears as deliveries are reported

    def queue_abort(self, upload_id: str, headers: wire.Headers, partition: int) -> None:
        """Withdraw an upload; `partition` -1: placed by the partitioner (an earlier version's)."""
        self._aborts.put((upload_id, headers, partition))

    def pending(self) -> int:
        return len(self.producer)

    def nothing_to_deliver(self) -> bool:
        # A failed producer may keep a record queued for ever: nothing will be delivered.
        return self.failed.is_set() or len(self.producer) == 0

    def give_up(self) -> None:
        """Forced stop: drop what waits in the queue. Records already on their way are left
        to land, so the abort records produced after them stay behind them in their partitions."""
        self.force.set()
        self.producer.purge(in_queue=True, in_flight=False)

    def fail(self, exc: KafkaException) -> None:
        """The producer failed for good (with the gapless guarantee: a record was refused)
        and sends nothing more. librdkafka raises that from poll() rather than telling
        error_cb, and delivery reports served in the same call can be lost to it, so every
        open upload fails; their abort records are tried, and the registry keeps them for
        the next start."""
        with self.stats.lock:
            first = self.failure is None
            if first:
                self.failure = f"Kafka producer failed: {describe_kafka_error(exc)}"
        self.failed.set()
        reason = self.failure or ""
        if not self._on_fatal(reason) and first:
            self.sink(Notice(level="error", message=reason, at=time.time()))

    # --- the delivery thread -------------------------------------------------------------

    def serve(self, finished: Callable[[], bool]) -> None:
        """Serve delivery reports and produce abort records until `finished()` (no upload
        thread produces any more) and every record is delivered (or, forced, the abort
        records had a moment to go)."""
        while True:
            self._poll(0.2)
            self.connection.probe(self.producer)
            try:
                self._send_aborts()
            except Exception as exc:  # this thread must outlive any bug: it drains and stops the uploader
                LOG.exception("sending abort records failed")
                self.sink(Notice(level="error", message=f"sending abort records failed: {exc!r}", at=time.time()))
            if finished() and self._aborts.empty() and (self.force.is_set() or self.nothing_to_deliver()):
                break
        if self.force.is_set():
            deadline = time.monotonic() + ABORT_GRACE_S
            while self._aborts_unacked and time.monotonic() < deadline:
                self._poll(0.1)

    def _poll(self, timeout: float) -> None:
        try:
            self.producer.poll(timeout)
        except Exception as exc:  # a bug in accounting must not stop deliveries being served
            fatal = fatal_cause(exc)
            if fatal is not None:
                self.fail(fatal)
            elif isinstance(exc, KafkaException):
                self.sink(Notice(level="error", message=f"Kafka: {describe_kafka_error(exc)}", at=time.time()))
            else:
                LOG.exception("delivery report handling failed")
                self.sink(Notice(level="error", message=f"delivery report handling failed: {exc!r}", at=time.time()))

    def _send_aborts(self) -> None:
        """Produce the abort records due, each once its upload's last record was produced."""
        while True:
            try:
                upload_id, headers, partition = due = self._aborts.get_nowait()
            except queue.Empty:
                return
            report = lambda err, _msg, uid=upload_id: self._abort_acked(uid, err)
            try:  # (partition -1, librdkafka's default: the partitioner places it)
                self.producer.produce(self.topic, b"", upload_id.encode(), partition=partition,
                                      headers=produced(headers), on_delivery=report)
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
        if err is None:
            self._on_withdrawn(upload_id)
