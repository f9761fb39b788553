"""Receipts: each upload's outcome, on a compacted topic beside the data topic.

Every reconstructor records there what became of each upload it ended (published,
quarantined, refused, withdrawn, abandoned), keyed by upload id and consumer group. Every
member follows the topic, so a partition's new owner, or a member restarted, skips the
uploads that already have a receipt in its group, however many there are. A receipt also
says, for whoever reads it, where the file went and that it was verified there.
docs/record-format.md describes the records.

Where the cluster refuses the topic, the reconstructor carries on without it (said once):
then only this member's own journal keeps a restart from publishing files again.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.kafka_clients import KAFKA_LOG, admin_settings, ensure_topic

Outcome = Literal["published", "quarantined", "refused", "withdrawn", "abandoned"]
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
SUFFIX = ".receipts"
VERSION_HEADER = ("msi.receipt", b"1")
TOPIC_CONFIG = {"cleanup.policy": "compact"}
READER_GROUP = "msi-tui-receipts-reader"  # librdkafka wants one; the reader never joins or commits


@dataclass(frozen=True)
class Receipt:
    """What one reconstructor (`group`, `host`, `output`) did with one upload."""

    upload_id: str
    group: str
    outcome: Outcome
    path: str  # the path the upload named
    saved_as: str = ""  # where it is now: relative to `output`, or the quarantine file
    size: int = 0
    digest: str = ""
    algorithm: str = ""
    reason: str = ""  # why, for every outcome but published
    host: str = ""
    output: str = ""
    at: float = 0.0

    @property
    def key(self) -> bytes:
        return f"{self.upload_id}@{self.group}".encode()

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @staticmethod
    def decode(value: bytes) -> Receipt | None:
        """The receipt in a record's value, or None for anything else (hostile or newer)."""
        try:
            fields = json.loads(value)
            receipt = Receipt(**fields)
        except (ValueError, TypeError):
            return None
        if not (isinstance(receipt.upload_id, str) and isinstance(receipt.group, str)
                and receipt.outcome in OUTCOMES):
            return None
        return receipt


def receipts_topic(data_topic: str) -> str:
    return data_topic + SUFFIX


class ReceiptBook:
    """Follows a receipts topic and remembers which uploads have a receipt in `group`
    (all groups when None); also writes receipts when started with `write`."""

    def __init__(self, config: ClusterConfig, data_topic: str, group: str | None) -> None:
        self.config = config
        self.topic = receipts_topic(data_topic)
        self.group = group
        self._seen: dict[str, Outcome] = {}
        self._lock = threading.Lock()
        self._positions: dict[int, int] = {}
        self._asked: list[threading.Event] = []  # syncs waiting for the follower to look up the ends
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self.unavailable: str | None = None  # why there are no receipts, when there are none

    def start(self, admin: AdminClient, write: bool) -> None:
        """Create the topic when missing and start following it; on refusal, say why in
        `unavailable` and follow nothing."""
        try:
            partitions = ensure_topic(admin, self.topic, 1, config=TOPIC_CONFIG)
        except Exception as exc:  # (OperatorError: refused, with the reason)
            self.unavailable = str(exc)
            return
        base = {**admin_settings(self.config), "logger": KAFKA_LOG}
        self._consumer = Consumer({**base, "group.id": READER_GROUP, "enable.auto.commit": False,
                                   "enable.partition.eof": True, "client.id": "msi-tui-receipts"})
        self._consumer.assign([TopicPartition(self.topic, p, -2) for p in range(partitions)])  # -2: beginning
        if write:
            self._producer = Producer({**base, "client.id": "msi-tui-receipts", "acks": "all", "linger.ms": 5,
                                       "enable.idempotence": True})
        self._thread = threading.Thread(target=self._follow, name="msi-receipts", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._consumer is not None

    def has(self, upload_id: str) -> bool:
        return upload_id in self._seen  # (a dict lookup is atomic; no lock on the hot path)

    def outcome(self, upload_id: str) -> Outcome | None:
        return self._seen.get(upload_id)

    def record(self, receipt: Receipt) -> None:
        """Remember the receipt at once and send it (see flush)."""
        self._seen[receipt.upload_id] = receipt.outcome
        if self._producer is None:
            return
        while True:
            try:
                self._producer.produce(self.topic, receipt.encode(), receipt.key, headers=[VERSION_HEADER])
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait until the receipts sent are acknowledged; returns how many are not."""
        return self._producer.flush(timeout) if self._producer is not None else 0

    def sync(self, timeout: float) -> bool:
        """Wait until every receipt written before this call has been read; False on timeout.
        (The follower thread asks where the topic ends: only one thread may call its consumer.)"""
        if self._consumer is None:
            return False
        asked = threading.Event()
        with self._lock:
            self._asked.append(asked)
        return asked.wait(timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Flush what was written, stop following; returns receipts left unacknowledged."""
        left = self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return left

    def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        waiting: list[tuple[dict[int, int], list[threading.Event]]] = []  # ends to reach, and who waits
        try:
            while not self._stop.is_set():
                with self._lock:
                    asked, self._asked = self._asked, []
                if asked:
                    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=5)[1]
                            for tp in consumer.assignment()}
                    waiting.append((ends, asked))
                for msg in consumer.consume(500, 0.05 if waiting else 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            self._positions[msg.partition()] = max(self._positions.get(msg.partition(), 0),
                                                                   msg.offset())
                        continue
                    self._take(msg.value() or b"")
                    self._positions[msg.partition()] = msg.offset() + 1
                for ends, events in [w for w in waiting if self._reached(w[0])]:
                    for event in events:
                        event.set()
                waiting = [w for w in waiting if not self._reached(w[0])]
        except Exception as exc:  # never silently: what follows has no receipts to go by
            KAFKA_LOG.error("receipts follower stopped: %s", exc)
            self.unavailable = f"receipts follower stopped: {exc}"
        finally:
            consumer.close()

    def _reached(self, ends: dict[int, int]) -> bool:
        return all(self._positions.get(p, 0) >= end for p, end in ends.items())

    def _take(self, value: bytes) -> None:
        receipt = Receipt.decode(value)
        if receipt is not None and (self.group is None or receipt.group == self.group):
            self._seen[receipt.upload_id] = receipt.outcome


def new_receipt(upload_id: str, group: str, outcome: Outcome, path: str, output: str, **details: object) -> Receipt:
    return Receipt(upload_id=upload_id, group=group, outcome=outcome, path=path, output=output,
                   host=socket.gethostname(), at=time.time(), **details)  # type: ignore[arg-type]
