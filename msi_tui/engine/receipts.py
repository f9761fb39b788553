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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, TypedDict, Unpack, get_args

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.kafka_clients import KAFKA_LOG, admin_settings, ensure_topic
from msi_tui.engine.kafka_records import offset_of, partition_of

Outcome = Literal["published", "quarantined", "refused", "withdrawn", "abandoned"]
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
SUFFIX = ".receipts"
VERSION_HEADER = ("msi.receipt", b"1")
# One receipt per upload and group: compacted, and dropped after 30 days, by when the data
# topic no longer holds the upload's records (Kafka keeps them 7 days by default) and no
# replay can need it. Every member reads the whole topic when it starts.
TOPIC_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": str(30 * 24 * 3600 * 1000)}
# Receipts come one per file, a thousand a second when files are small: sent and fetched
# one by one, their requests took the broker's and our CPU from the files themselves.
# Gathered for 50 ms on the way out, and fetched when 64 KiB or 100 ms have gathered, they
# cost little. A member killed within those 50 ms (and the round trip) loses receipts: the
# duplicate window (docs/architecture.md).
RECEIPT_LINGER_MS = 50
QUIET_FOLLOWING = {"fetch.min.bytes": 65536, "fetch.wait.max.ms": 100}
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
        if not (isinstance(fields["upload_id"], str) and isinstance(fields["group"], str)
                and fields["outcome"] in OUTCOMES):
            return None
        return receipt


def receipts_topic(data_topic: str) -> str:
    return data_topic + SUFFIX


class ReceiptBook:
    """Follows a receipts topic and remembers which uploads have a receipt in `group`
    (all groups when None); also writes receipts when started with `write`."""

    def __init__(self, config: ClusterConfig, data_topic: str, group: str | None,
                 on_receipt: Callable[[Receipt], None] | None = None) -> None:
        self.config = config
        self.on_receipt = on_receipt  # called from the follower thread with each receipt read
        self.topic = receipts_topic(data_topic)
        self.group = group
        self._seen: dict[str, Outcome] = {}
        self._lock = threading.Lock()
        self._positions: dict[int, int] = {}  # partition -> next offset to read (under _read)
        self._read = threading.Condition(self._lock)
        self._admin: AdminClient | None = None
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._assigned: list[TopicPartition] = []
        self._suffix = None if group is None else f"@{group}".encode()  # the keys of this group's receipts
        self.unavailable: str | None = None  # why there are no receipts, when there are none

    def start(self, admin: AdminClient, write: bool) -> None:
        """Create the topic when missing and start following it; on refusal, say why in
        `unavailable` and follow nothing."""
        try:
            partitions = ensure_topic(admin, self.topic, 1, config=TOPIC_CONFIG)
        except Exception as exc:  # (OperatorError: refused, with the reason)
            self.unavailable = str(exc)
            return
        self._admin = admin
        base = {**admin_settings(self.config), "logger": KAFKA_LOG}
        self._consumer = Consumer({**base, "group.id": READER_GROUP, "enable.auto.commit": False,
                                   "enable.partition.eof": True, "client.id": "msi-tui-receipts",
                                   **QUIET_FOLLOWING})
        self._assigned = [TopicPartition(self.topic, p) for p in range(partitions)]
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        if write:
            self._producer = Producer({**base, "client.id": "msi-tui-receipts", "acks": "all",
                                       "linger.ms": RECEIPT_LINGER_MS, "enable.idempotence": True})
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
        (The ends come from the admin client: the follower's own connection may be holding a
        fetch open for up to half a second.)"""
        if self._consumer is None or self._admin is None:
            return False
        deadline = time.monotonic() + timeout
        while True:  # (a topic just created may not be known to every broker yet)
            try:
                asked = self._admin.list_offsets({tp: OffsetSpec.latest() for tp in self._assigned},
                                                 request_timeout=max(0.1, deadline - time.monotonic()))
                ends = {tp.partition: future.result().offset for tp, future in asked.items()}
                break
            except KafkaException:
                if self._stop.wait(0.1) or time.monotonic() > deadline:
                    return False
        with self._read:
            return self._read.wait_for(
                lambda: all(self._positions.get(p, 0) >= end for p, end in ends.items()),
                timeout=max(0.0, deadline - time.monotonic()))

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
        try:
            while not self._stop.is_set():
                read: dict[int, int] = {}
                for msg in consumer.consume(500, 0.2):
                    err = msg.error()
                    if err is None:
                        key = msg.key() or b""
                        # (not another group's, and not one this member wrote and knows)
                        if (self._suffix is None or key.endswith(self._suffix)) and \
                                key[:32].decode("ascii", "replace") not in self._seen:
                            self._take(msg.value() or b"")
                        read[partition_of(msg)] = offset_of(msg) + 1
                    elif err.code() == KafkaError._PARTITION_EOF:
                        read[partition_of(msg)] = offset_of(msg)
                if read:
                    with self._read:
                        for p, position in read.items():
                            self._positions[p] = max(self._positions.get(p, 0), position)
                        self._read.notify_all()
        except Exception as exc:  # never silently: what follows has no receipts to go by
            KAFKA_LOG.error("receipts follower stopped: %s", exc)
            self.unavailable = f"receipts follower stopped: {exc}"
        finally:
            consumer.close()

    def _take(self, value: bytes) -> None:
        receipt = Receipt.decode(value)
        if receipt is not None and (self.group is None or receipt.group == self.group):
            self._seen[receipt.upload_id] = receipt.outcome
            if self.on_receipt is not None:
                try:
                    self.on_receipt(receipt)
                except Exception:  # the follower must outlive whoever it tells
                    KAFKA_LOG.exception("handling receipt of upload %s", receipt.upload_id)


class ReceiptDetails(TypedDict, total=False):
    """What a receipt may say besides who ended which upload how (see Receipt)."""

    saved_as: str
    size: int
    digest: str
    algorithm: str
    reason: str


def new_receipt(upload_id: str, group: str, outcome: Outcome, path: str, output: str,
                **details: Unpack[ReceiptDetails]) -> Receipt:
    return Receipt(upload_id=upload_id, group=group, outcome=outcome, path=path, output=output,
                   host=socket.gethostname(), at=time.time(), **details)
