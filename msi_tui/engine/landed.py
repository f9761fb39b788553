"""Whether uploads an earlier run left unfinished actually ended on the topic.

An uploader killed after the broker acknowledged a file's `end` record, but before it wrote
that down, must not send the file again (it would be published twice, and the copy would
stay on the topic for every later consumer group). The registry marks an upload `ending`
before its `end` record is produced and names the partition it goes to, so a restart reads
only that partition, from the upload's start, for the upload's `end` or `abort` record.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from msi_tui.engine import wire
from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.events import Notice, Sink
from msi_tui.engine.kafka_clients import KAFKA_LOG, admin_settings
from msi_tui.engine.kafka_records import headers_of, offset_of, partition_of
from msi_tui.engine.registry import Registry, Unfinished

CLOCK_SLACK_MS = 60_000  # records are looked for from this long before the upload began
LOOK_TIMEOUT_S = 30.0
READER_GROUP = "msi-tui-restart-check"  # librdkafka wants one; the reader never joins or commits


def ended_on_topic(config: ClusterConfig, topic: str, uploads: Iterable[Unfinished]) -> dict[str, str]:
    """Upload id -> `end` or `abort` for those of `uploads` whose closing record is on the
    topic. An upload not found (or not looked for: the topic could not be read in time) is
    absent: the caller withdraws it and sends the file again, a duplicate at worst, never a
    loss."""
    wanted: dict[int, dict[bytes, Unfinished]] = defaultdict(dict)
    for u in uploads:
        if u.partition >= 0:
            wanted[u.partition][u.upload_id.encode()] = u
    if not wanted:
        return {}
    consumer = Consumer({**admin_settings(config), "logger": KAFKA_LOG, "group.id": READER_GROUP,
                         "enable.auto.commit": False, "enable.partition.eof": True})
    found: dict[str, str] = {}
    try:
        starts = [TopicPartition(topic, p, int(min(u.began for u in ids.values()) * 1000) - CLOCK_SLACK_MS)
                  for p, ids in wanted.items()]
        starts = consumer.offsets_for_times(starts, LOOK_TIMEOUT_S)
        ends = {tp.partition: consumer.get_watermark_offsets(tp, LOOK_TIMEOUT_S)[1] for tp in starts}
        reading = [tp for tp in starts if tp.offset >= 0 and tp.offset < ends[tp.partition]]
        if not reading:
            return found
        consumer.assign(reading)
        left = {tp.partition for tp in reading}
        deadline = time.monotonic() + LOOK_TIMEOUT_S
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        left.discard(partition_of(msg))
                    continue
                p = partition_of(msg)
                if p not in left:
                    continue
                upload = wanted[p].get(msg.key() or b"")
                if upload is not None:
                    kind = dict(headers_of(msg) or ()).get("msi.kind")
                    if kind in (b"end", b"abort"):
                        found[upload.upload_id] = kind.decode()
                if offset_of(msg) + 1 >= ends[p] or all(uid.decode() in found for uid in wanted[p]):
                    left.discard(p)
    except KafkaException as exc:
        KAFKA_LOG.warning("looking for unfinished uploads on %s: %s", topic, exc)
    finally:
        consumer.close()
    return found


def settle_unfinished(config: ClusterConfig, topic: str, registry: Registry, unfinished: list[Unfinished],
                      sink: Sink) -> list[tuple[str, wire.Headers, int]]:
    """Record as done the uploads of `unfinished` whose `end` record is on the topic (they
    were sent: the file is not sent again), and return the abort records that withdraw the
    others, as (upload id, headers, partition): reconstructors hold their staged files and
    their partitions' offsets until an abort comes."""
    ending = [u for u in unfinished if u.state == "ending"]
    ended = ended_on_topic(config, topic, ending) if ending else {}
    withdraw = []
    for u in unfinished:
        if ended.get(u.upload_id) == "end":
            registry.finish(u.upload_id, "done")
            if u.folder:
                registry.mark(u.relpath, u.size, u.mtime_ns, u.upload_id, u.chunk_size, "done", u.folder)
            continue
        # (a reconstructor matches an abort to its upload by id and partition only)
        headers = wire.abort_headers(wire.file_headers(u.upload_id, u.relpath, u.size, u.chunk_size, u.digest))
        withdraw.append((u.upload_id, headers, u.partition))
    if withdraw:
        n = len(withdraw)
        sink(Notice(level="info", at=time.time(), message=(
            f"withdrawing {n} unfinished upload{'' if n == 1 else 's'} an earlier run left (an abort record each)")))
    if len(unfinished) > len(withdraw):
        n = len(unfinished) - len(withdraw)
        sink(Notice(level="info", at=time.time(), message=(
            f"{n} upload{'' if n == 1 else 's'} an earlier run left unrecorded had reached the topic whole: "
            "not sent again")))
    return withdraw
